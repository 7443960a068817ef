// libFuzzer target: the guest agent's byte stream as either side reads it,
// in arbitrary chunks. Frames over the limit must stop the reader; JSON
// payloads are read field by field the way the host and agent read them.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/protocol.h"
#include "base/json_fields.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace snapvm;
  if (size < 1) return 0;
  size_t chunk = 1 + data[0] % 64;
  agent::FrameReader reader;
  size_t pos = 1;
  while (pos < size && !reader.error()) {
    size_t n = std::min(chunk, size - pos);
    reader.feed({data + pos, n});
    pos += n;
    while (auto m = reader.next()) {
      if (m->payload.size() > agent::kMaxFrameBytes) __builtin_trap();
      auto j = nlohmann::json::parse(m->payload.begin(), m->payload.end(), nullptr, false);
      (void)json_field_or(j, "code", -1);
      (void)json_field_or(j, "signal", 0);
      (void)json_field_or(j, "timed_out", false);
      (void)json_field_or(j, "bytes", uint64_t{0});
      (void)json_field_or(j, "message", std::string());
      (void)json_field_or(j, "timeout_ms", int64_t{0});
      (void)json_field_or(j, "mode", 0644);
      (void)json_field<int64_t>(j, "realtime_ns");
    }
  }
  return 0;
}
