// The virtio-vsock packet header (virtio 1.1, section 5.10.6), encoded
// explicitly little-endian.
#pragma once

#include <cstdint>
#include <cstring>

namespace snapvm::virtio::vsock {

inline constexpr uint64_t kHostCid = 2;
inline constexpr size_t kHeaderBytes = 44;
inline constexpr uint16_t kTypeStream = 1;

enum Op : uint16_t {
  kOpInvalid = 0,
  kOpRequest = 1,
  kOpResponse = 2,
  kOpRst = 3,
  kOpShutdown = 4,
  kOpRw = 5,
  kOpCreditUpdate = 6,
  kOpCreditRequest = 7,
};

inline constexpr uint32_t kShutdownRcv = 1;
inline constexpr uint32_t kShutdownSend = 2;

struct Header {
  uint64_t src_cid = 0;
  uint64_t dst_cid = 0;
  uint32_t src_port = 0;
  uint32_t dst_port = 0;
  uint32_t len = 0;
  uint16_t type = kTypeStream;
  uint16_t op = kOpInvalid;
  uint32_t flags = 0;
  uint32_t buf_alloc = 0;
  uint32_t fwd_cnt = 0;

  void encode(uint8_t out[kHeaderBytes]) const {
    std::memcpy(out + 0, &src_cid, 8);
    std::memcpy(out + 8, &dst_cid, 8);
    std::memcpy(out + 16, &src_port, 4);
    std::memcpy(out + 20, &dst_port, 4);
    std::memcpy(out + 24, &len, 4);
    std::memcpy(out + 28, &type, 2);
    std::memcpy(out + 30, &op, 2);
    std::memcpy(out + 32, &flags, 4);
    std::memcpy(out + 36, &buf_alloc, 4);
    std::memcpy(out + 40, &fwd_cnt, 4);
  }
  static Header decode(const uint8_t in[kHeaderBytes]) {
    Header h;
    std::memcpy(&h.src_cid, in + 0, 8);
    std::memcpy(&h.dst_cid, in + 8, 8);
    std::memcpy(&h.src_port, in + 16, 4);
    std::memcpy(&h.dst_port, in + 20, 4);
    std::memcpy(&h.len, in + 24, 4);
    std::memcpy(&h.type, in + 28, 2);
    std::memcpy(&h.op, in + 30, 2);
    std::memcpy(&h.flags, in + 32, 4);
    std::memcpy(&h.buf_alloc, in + 36, 4);
    std::memcpy(&h.fwd_cnt, in + 40, 4);
    return h;
  }
};

}  // namespace snapvm::virtio::vsock
