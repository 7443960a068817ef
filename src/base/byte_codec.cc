#include "base/byte_codec.h"

namespace snapvm {

void ByteReader::fail(std::string why) {
  if (!ok()) return;
  error_ = fmt::format("{} at offset {:#x}: {}", what_, base_ + pos_, why);
}

bool ByteReader::need(size_t n, const char* what) {
  if (!ok()) return false;
  if (data_.size() - pos_ < n) {
    fail(fmt::format("{} needs {} bytes, {} left", what, n, data_.size() - pos_));
    return false;
  }
  return true;
}

uint64_t ByteReader::get_le(int n) {
  if (!need(static_cast<size_t>(n), "field")) return 0;
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(data_[pos_ + i]) << (8 * i);
  pos_ += static_cast<size_t>(n);
  return v;
}

std::span<const uint8_t> ByteReader::bytes(size_t n) {
  if (!need(n, "byte string")) return {};
  auto out = data_.subspan(pos_, n);
  pos_ += n;
  return out;
}

std::span<const uint8_t> ByteReader::blob(size_t max_len) {
  uint32_t len = u32();
  if (!ok()) return {};
  if (len > max_len) {
    pos_ -= 4;
    fail(fmt::format("length {} exceeds limit {}", len, max_len));
    return {};
  }
  return bytes(len);
}

std::string ByteReader::str(size_t max_len) {
  auto b = blob(max_len);
  return std::string(b.begin(), b.end());
}

uint32_t ByteReader::count(uint32_t max_count, size_t min_elem_bytes) {
  uint32_t n = u32();
  if (!ok()) return 0;
  if (n > max_count) {
    pos_ -= 4;
    fail(fmt::format("count {} exceeds limit {}", n, max_count));
    return 0;
  }
  if (min_elem_bytes != 0 && static_cast<uint64_t>(n) * min_elem_bytes > remaining()) {
    pos_ -= 4;
    fail(fmt::format("count {} needs at least {} bytes, {} left", n,
                     static_cast<uint64_t>(n) * min_elem_bytes, remaining()));
    return 0;
  }
  return n;
}

ByteReader ByteReader::sub_record(size_t max_len) {
  uint64_t start = file_offset() + 4;
  auto body = blob(max_len);
  ByteReader sub(body, start, what_);
  if (!ok()) sub.error_ = error_;
  return sub;
}

void ByteReader::expect_zero(size_t n) {
  auto b = bytes(n);
  for (size_t i = 0; i < b.size(); ++i) {
    if (b[i] != 0) {
      pos_ -= n - i;
      fail("reserved byte is not zero");
      return;
    }
  }
}

}  // namespace snapvm
