// libFuzzer target: a Firecracker API request (method, path, body) from an
// untrusted client, routed through the API's state rules to a backend that
// accepts everything. Must never throw or crash, and must answer every
// request with 200, 204 or a 400 carrying a fault message.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "firecracker/api.h"

namespace {

using namespace snapvm;
using namespace snapvm::firecracker;

class AcceptingBackend final : public VmBackend {
 public:
  Status start(const VmConfig&) override { return {}; }
  Status load_snapshot(const SnapshotLoadBody&) override { return {}; }
  Status pause() override { return {}; }
  Status resume() override { return {}; }
  Status create_snapshot(const SnapshotCreateBody&) override { return {}; }
  Status send_ctrl_alt_del() override { return {}; }
  Status replace_drive(size_t, const std::string&) override { return {}; }
  Status redirect_log(UniqueFd) override { return {}; }
  nlohmann::json metrics() override { return nlohmann::json::object(); }
};

constexpr std::string_view kMethods[] = {"GET", "PUT", "PATCH", "POST"};
constexpr uint32_t kVirtioSlots = 19;  // as x86_64's machine: the fewer of the two

}  // namespace

// Input: one byte choosing the method, the path up to a newline, the body.
// Several requests per input, separated by a zero byte, so state rules
// (configure, start, pause) are reached.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  AcceptingBackend backend;
  Api api("fuzz", backend, kVirtioSlots);
  std::string_view in(reinterpret_cast<const char*>(data), size);
  while (!in.empty()) {
    size_t end = in.find('\0');
    std::string_view one = in.substr(0, end);
    in = end == std::string_view::npos ? std::string_view() : in.substr(end + 1);
    if (one.empty()) continue;
    std::string_view method = kMethods[static_cast<uint8_t>(one[0]) % 4];
    one.remove_prefix(1);
    size_t nl = one.find('\n');
    std::string_view path = one.substr(0, nl);
    std::string_view body = nl == std::string_view::npos ? std::string_view() : one.substr(nl + 1);
    // These open host files the body names; the fuzzer must not scribble
    // over the machine it runs on.
    if (path == "/logger" || path == "/metrics") continue;
    HttpResponse r = api.handle(method, path, body);
    if (r.status == 400) {
      auto j = nlohmann::json::parse(r.body, nullptr, false);
      if (!j.is_object() || !j.contains("fault_message")) __builtin_trap();
    } else if (r.status != 200 && r.status != 204) {
      __builtin_trap();
    }
  }
  return 0;
}
