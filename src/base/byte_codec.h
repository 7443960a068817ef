// Explicit little-endian encoding. Every on-disk field goes through these, so
// the format never depends on struct layout, padding or host byte order.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace snapvm {

class ByteWriter {
 public:
  void u8(uint8_t v) { buf_.push_back(v); }
  void u16(uint16_t v) { put_le(v, 2); }
  void u32(uint32_t v) { put_le(v, 4); }
  void u64(uint64_t v) { put_le(v, 8); }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void bytes(std::span<const uint8_t> b) { buf_.insert(buf_.end(), b.begin(), b.end()); }
  // u32 length, then the bytes.
  void blob(std::span<const uint8_t> b) {
    u32(static_cast<uint32_t>(b.size()));
    bytes(b);
  }
  void str(std::string_view s) { blob({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
  void pad_to(size_t alignment) {
    while (buf_.size() % alignment != 0) buf_.push_back(0);
  }
  // Reserves a u32 to be filled later with patch_u32 (e.g. a record length).
  size_t reserve_u32() {
    size_t at = buf_.size();
    u32(0);
    return at;
  }
  void patch_u32(size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) buf_[at + i] = static_cast<uint8_t>(v >> (8 * i));
  }

  size_t size() const { return buf_.size(); }
  const std::vector<uint8_t>& data() const { return buf_; }
  std::vector<uint8_t> take() { return std::move(buf_); }

 private:
  void put_le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) buf_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> buf_;
};

// Bounds-checked reader over untrusted bytes. The first failure sticks: later
// reads return zeros, so a decoder reads a whole record and checks ok() once.
// Errors name the absolute file offset (base_offset + position).
class ByteReader {
 public:
  ByteReader(std::span<const uint8_t> data, uint64_t base_offset, std::string what)
      : data_(data), base_(base_offset), what_(std::move(what)) {}

  uint8_t u8() { return static_cast<uint8_t>(get_le(1)); }
  uint16_t u16() { return static_cast<uint16_t>(get_le(2)); }
  uint32_t u32() { return static_cast<uint32_t>(get_le(4)); }
  uint64_t u64() { return get_le(8); }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  std::span<const uint8_t> bytes(size_t n);
  // A u32-length-prefixed blob of at most max_len bytes.
  std::span<const uint8_t> blob(size_t max_len);
  std::string str(size_t max_len);

  // Reads an element count and checks it against both a hard limit and the
  // bytes left (each element needs at least min_elem_bytes), so a lying count
  // can never size an allocation beyond the input it came with.
  uint32_t count(uint32_t max_count, size_t min_elem_bytes);

  // A length-delimited sub-record: the sub-reader sees exactly its bytes, and
  // trailing bytes a newer minor version appended are skipped by the caller.
  ByteReader sub_record(size_t max_len);

  void fail(std::string why);
  // Carries a failed sub-record's error up to this reader.
  void adopt_error(const ByteReader& sub) {
    if (ok() && !sub.ok()) error_ = sub.error_;
  }
  void expect_zero(size_t n);  // padding and reserved bytes must be zero

  bool ok() const { return error_.empty(); }
  size_t remaining() const { return ok() ? data_.size() - pos_ : 0; }
  size_t position() const { return pos_; }
  uint64_t file_offset() const { return base_ + pos_; }
  bool at_end() const { return remaining() == 0; }
  Error error() const { return Error(ErrorCode::kDataLoss, error_); }

 private:
  uint64_t get_le(int n);
  bool need(size_t n, const char* what);

  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  uint64_t base_;
  std::string what_;
  std::string error_;
};

}  // namespace snapvm
