// A minimal virtio driver for tests: guest RAM in a buffer, a split queue
// laid out in it, and helpers that write descriptors as a guest would, well
// formed or not.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "devices/guest_memory.h"
#include "devices/virtio/virtqueue.h"

namespace snapvm::virtio::test {

class FakeDriver {
 public:
  static constexpr uint64_t kRamSize = 1 << 20;
  static constexpr uint64_t kDesc = 0x80000, kAvail = 0x81000, kUsed = 0x82000;

  struct Seg {
    uint64_t addr;
    uint32_t len;
    bool writable;
  };
  struct RawDesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
  };

  explicit FakeDriver(uint16_t size, uint16_t max_size = 256) : ram(kRamSize, 0), queue(max_size) {
    mem = GuestMemory({{0, {ram.data(), ram.size()}}});
    queue.config().size = size;
    queue.config().desc_addr = kDesc;
    queue.config().avail_addr = kAvail;
    queue.config().used_addr = kUsed;
    queue.config().ready = true;
    queue.activate(mem);
  }

  uint8_t* host(uint64_t gpa) { return ram.data() + gpa; }
  void write_guest(uint64_t gpa, const std::string& s) { std::memcpy(host(gpa), s.data(), s.size()); }

  void write_desc(uint64_t table, uint16_t index, const RawDesc& d) {
    uint8_t* p = host(table + 16ull * index);
    std::memcpy(p, &d.addr, 8);
    std::memcpy(p + 8, &d.len, 4);
    std::memcpy(p + 12, &d.flags, 2);
    std::memcpy(p + 14, &d.next, 2);
  }

  void push_avail(uint16_t head) {
    uint16_t idx = avail_idx();
    uint16_t size = queue.config().size;
    std::memcpy(host(kAvail + 4 + 2 * (idx % size)), &head, 2);
    set_avail_idx(static_cast<uint16_t>(idx + 1));
  }
  uint16_t avail_idx() {
    uint16_t v;
    std::memcpy(&v, host(kAvail + 2), 2);
    return v;
  }
  void set_avail_idx(uint16_t v) { std::memcpy(host(kAvail + 2), &v, 2); }

  // A chain of descriptors taken from the table in order.
  void add_chain(const std::vector<Seg>& segs) {
    std::vector<RawDesc> raw;
    for (size_t i = 0; i < segs.size(); ++i) {
      uint16_t flags = static_cast<uint16_t>((i + 1 < segs.size() ? 1 : 0) | (segs[i].writable ? 2 : 0));
      raw.push_back({segs[i].addr, segs[i].len, flags, static_cast<uint16_t>(next_free_ + i + 1)});
    }
    add_raw_chain(raw);
  }

  // Descriptors exactly as given, from the next free index; `next` fields
  // are used as written.
  void add_raw_chain(const std::vector<RawDesc>& raw) {
    uint16_t head = next_free_;
    for (const auto& d : raw) write_desc(kDesc, next_free_++, d);
    push_avail(head);
  }

  void add_indirect_chain(uint64_t table, const std::vector<Seg>& segs) {
    for (size_t i = 0; i < segs.size(); ++i) {
      uint16_t flags = static_cast<uint16_t>((i + 1 < segs.size() ? 1 : 0) | (segs[i].writable ? 2 : 0));
      write_desc(table, static_cast<uint16_t>(i), {segs[i].addr, segs[i].len, flags, static_cast<uint16_t>(i + 1)});
    }
    add_raw_chain({{table, static_cast<uint32_t>(16 * segs.size()), 4, 0}});
  }

  void add_nested_indirect() {
    write_desc(0x6000, 0, {0x7000, 16, 4, 0});
    add_raw_chain({{0x6000, 16, 4, 0}});
  }

  uint16_t used_idx() {
    uint16_t v;
    std::memcpy(&v, host(kUsed + 2), 2);
    return v;
  }
  std::pair<uint32_t, uint32_t> used_elem(uint16_t i) {
    uint32_t id, len;
    uint8_t* p = host(kUsed + 4 + 8 * (i % queue.config().size));
    std::memcpy(&id, p, 4);
    std::memcpy(&len, p + 4, 4);
    return {id, len};
  }

  // The device returned every chain: descriptors may be reused.
  void recycle() { next_free_ = 0; }

  std::vector<uint8_t> ram;
  GuestMemory mem;
  Virtqueue queue;

 private:
  uint16_t next_free_ = 0;
};

}  // namespace snapvm::virtio::test
