// A guest driver for whole virtio-mmio devices in tests: guest RAM in a
// buffer, every queue of the device set up through the transport's
// registers as Linux does, and helpers to post chains, kick and read back
// the used rings. Devices with their own threads (vsock) answer
// asynchronously, hence the waiting helpers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "devices/virtio/mmio_transport.h"

namespace snapvm::virtio::test {

class MmioGuest {
 public:
  static constexpr uint64_t kRamSize = 4 << 20;
  static constexpr uint64_t kRings = 0x100000;   // queue q: desc, avail, used at kRings + q * kRingStride
  static constexpr uint64_t kRingStride = 0x10000;
  static constexpr uint64_t kData = 0x200000;    // buffers from here on
  static constexpr uint16_t kQueueSize = 64;

  struct Seg {
    uint64_t addr;
    uint32_t len;
    bool writable;
  };

  explicit MmioGuest(std::unique_ptr<VirtioDevice> device, uint64_t features = kFeatureVersion1)
      : ram_(kRamSize, 0) {
    GuestMemory mem({{0, {ram_.data(), ram_.size()}}});
    transport_ = std::make_unique<MmioTransport>(std::move(device), mem, [this] { ++irqs; });
    queues_ = transport_->device().queue_max_sizes().size();
    next_free_.assign(queues_, 0);
    w32(0x070, 1 | 2);
    w32(0x024, 0);
    w32(0x020, uint32_t(features));
    w32(0x024, 1);
    w32(0x020, uint32_t(features >> 32));
    w32(0x070, 1 | 2 | 8);
    for (uint32_t q = 0; q < queues_; ++q) {
      w32(0x030, q);
      w32(0x038, kQueueSize);
      w32(0x080, uint32_t(desc(q)));
      w32(0x090, uint32_t(avail(q)));
      w32(0x0a0, uint32_t(used(q)));
      w32(0x044, 1);
    }
    w32(0x070, 1 | 2 | 8 | 4);  // DRIVER_OK
  }

  MmioTransport& transport() { return *transport_; }
  // What `snapvm restore` does: a new device, in a new process, takes over
  // the queues this guest set up, from its transport's saved state; the
  // guest's RAM and rings stay as they are.
  Status replace_by_restored(std::unique_ptr<VirtioDevice> device) {
    state::VirtioMmioState saved = transport_->save();
    transport_.reset();
    GuestMemory mem({{0, {ram_.data(), ram_.size()}}});
    transport_ = std::make_unique<MmioTransport>(std::move(device), mem, [this] { ++irqs; });
    return transport_->restore(saved);
  }
  uint8_t* host(uint64_t gpa) { return ram_.data() + gpa; }
  void w32(uint64_t off, uint32_t v) { transport_->mmio_write(off, {reinterpret_cast<uint8_t*>(&v), 4}); }
  uint32_t r32(uint64_t off) {
    uint32_t v = 0;
    transport_->mmio_read(off, {reinterpret_cast<uint8_t*>(&v), 4});
    return v;
  }
  void notify(uint32_t q) { w32(0x050, q); }

  // Posts a chain on queue q (descriptors taken round-robin); no kick.
  void add_chain(uint32_t q, const std::vector<Seg>& segs) {
    uint16_t head = next_free_[q];
    for (size_t i = 0; i < segs.size(); ++i) {
      uint16_t index = static_cast<uint16_t>((head + i) % kQueueSize);
      uint16_t next = static_cast<uint16_t>((head + i + 1) % kQueueSize);
      uint16_t flags = static_cast<uint16_t>((i + 1 < segs.size() ? 1 : 0) | (segs[i].writable ? 2 : 0));
      write_desc(desc(q), index, segs[i].addr, segs[i].len, flags, next);
    }
    next_free_[q] = static_cast<uint16_t>((head + segs.size()) % kQueueSize);
    uint16_t idx = avail_idx(q);
    std::memcpy(host(avail(q) + 4 + 2 * (idx % kQueueSize)), &head, 2);
    __atomic_store_n(reinterpret_cast<uint16_t*>(host(avail(q) + 2)), static_cast<uint16_t>(idx + 1), __ATOMIC_RELEASE);
  }
  uint16_t avail_idx(uint32_t q) { return __atomic_load_n(reinterpret_cast<uint16_t*>(host(avail(q) + 2)), __ATOMIC_ACQUIRE); }
  uint16_t used_idx(uint32_t q) { return __atomic_load_n(reinterpret_cast<uint16_t*>(host(used(q) + 2)), __ATOMIC_ACQUIRE); }
  // (descriptor head, bytes written) of used element i.
  std::pair<uint32_t, uint32_t> used_elem(uint32_t q, uint16_t i) {
    uint32_t id, len;
    uint8_t* p = host(used(q) + 4 + 8 * (i % kQueueSize));
    std::memcpy(&id, p, 4);
    std::memcpy(&len, p + 4, 4);
    return {id, len};
  }
  // Posts on queue q the chain a hostile driver builds to outgrow the
  // queue: every descriptor of the ring but one, chained, then one
  // indirect table of 1024 more (the most a table may hold), each a
  // `writable` buffer of 16 bytes at `data`. No kick.
  void add_overlong_chain(uint32_t q, uint64_t data, bool writable) {
    const uint64_t table = data + 0x1000;
    const uint16_t buffer_flags = writable ? 2 : 0;
    for (uint16_t i = 0; i < kQueueSize; ++i) {
      const bool last = i + 1 == kQueueSize;
      write_desc(desc(q), i, last ? table : data, last ? 1024 * 16 : 16,
                 static_cast<uint16_t>(last ? 4 /*INDIRECT*/ : (1 /*NEXT*/ | buffer_flags)),
                 static_cast<uint16_t>(i + 1));
    }
    for (uint16_t i = 0; i < 1024; ++i) {
      write_desc(table, i, data, 16, static_cast<uint16_t>((i + 1 < 1024 ? 1 : 0) | buffer_flags),
                 static_cast<uint16_t>(i + 1));
    }
    uint16_t idx = avail_idx(q);
    std::memset(host(avail(q) + 4 + 2 * (idx % kQueueSize)), 0, 2);  // head: descriptor 0
    __atomic_store_n(reinterpret_cast<uint16_t*>(host(avail(q) + 2)), static_cast<uint16_t>(idx + 1), __ATOMIC_RELEASE);
  }
  void write_desc(uint64_t table, uint16_t index, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t* p = host(table + 16ull * index);
    std::memcpy(p, &addr, 8);
    std::memcpy(p + 8, &len, 4);
    std::memcpy(p + 12, &flags, 2);
    std::memcpy(p + 14, &next, 2);
  }

  // The guest address of the first buffer of the chain with head `id`.
  uint64_t desc_addr(uint32_t q, uint32_t id) {
    uint64_t a;
    std::memcpy(&a, host(desc(q) + 16ull * id), 8);
    return a;
  }

  // Waits until `done()` or the timeout; returns done().
  static bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  std::atomic<int> irqs{0};

 private:
  static uint64_t desc(uint32_t q) { return kRings + q * kRingStride; }
  static uint64_t avail(uint32_t q) { return desc(q) + 0x4000; }
  static uint64_t used(uint32_t q) { return desc(q) + 0x8000; }

  std::vector<uint8_t> ram_;
  std::unique_ptr<MmioTransport> transport_;
  uint32_t queues_ = 0;
  std::vector<uint16_t> next_free_;
};

}  // namespace snapvm::virtio::test
