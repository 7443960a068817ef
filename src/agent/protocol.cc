#include "agent/protocol.h"

#include <cstring>

namespace snapvm::agent {

void append_frame(std::vector<uint8_t>& out, Frame type, std::span<const uint8_t> payload) {
  uint32_t len = static_cast<uint32_t>(payload.size() + 1);
  uint8_t head[5];
  for (int i = 0; i < 4; ++i) head[i] = static_cast<uint8_t>(len >> (8 * i));
  head[4] = static_cast<uint8_t>(type);
  out.insert(out.end(), head, head + 5);
  out.insert(out.end(), payload.begin(), payload.end());
}

void append_frame(std::vector<uint8_t>& out, Frame type, const std::string& payload) {
  append_frame(out, type, {reinterpret_cast<const uint8_t*>(payload.data()), payload.size()});
}

std::optional<FrameReader::Message> FrameReader::next() {
  if (error_ || buf_.size() - pos_ < 5) return std::nullopt;
  uint32_t len = 0;
  for (int i = 0; i < 4; ++i) len |= uint32_t{buf_[pos_ + i]} << (8 * i);
  if (len == 0 || len - 1 > kMaxFrameBytes) {
    error_ = true;
    return std::nullopt;
  }
  if (buf_.size() - pos_ < 4 + static_cast<size_t>(len)) return std::nullopt;
  Message m{static_cast<Frame>(buf_[pos_ + 4]), {}};
  m.payload.assign(buf_.begin() + static_cast<long>(pos_) + 5, buf_.begin() + static_cast<long>(pos_) + 4 + len);
  pos_ += 4 + len;
  if (pos_ > (1u << 20)) {  // compact now and then
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<long>(pos_));
    pos_ = 0;
  }
  return m;
}

}  // namespace snapvm::agent
