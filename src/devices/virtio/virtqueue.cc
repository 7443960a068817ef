#include "devices/virtio/virtqueue.h"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

namespace snapvm::virtio {
namespace {

constexpr uint16_t kDescNext = 1;
constexpr uint16_t kDescWrite = 2;
constexpr uint16_t kDescIndirect = 4;
constexpr uint16_t kAvailNoInterrupt = 1;
constexpr uint64_t kDescBytes = 16;

struct Desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

// Ring fields the guest writes concurrently: read them once, atomically.
uint16_t load_u16(const uint8_t* p) { return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_ACQUIRE); }
void store_u16(uint8_t* p, uint16_t v) { __atomic_store_n(reinterpret_cast<uint16_t*>(p), v, __ATOMIC_RELEASE); }

bool read_desc(const GuestMemory& mem, uint64_t table, uint32_t index, Desc& d) {
  uint8_t raw[kDescBytes];
  if (!mem.read(table + index * kDescBytes, raw, kDescBytes)) return false;
  std::memcpy(&d.addr, raw, 8);
  std::memcpy(&d.len, raw + 8, 4);
  std::memcpy(&d.flags, raw + 12, 2);
  std::memcpy(&d.next, raw + 14, 2);
  return true;
}

}  // namespace

uint64_t Chain::readable_bytes() const {
  uint64_t n = 0;
  for (const auto& b : readable) n += b.len;
  return n;
}

uint64_t Chain::writable_bytes() const {
  uint64_t n = 0;
  for (const auto& b : writable) n += b.len;
  return n;
}

size_t Chain::read(uint64_t offset, std::span<uint8_t> out) const {
  size_t done = 0;
  for (const auto& b : readable) {
    if (done == out.size()) break;
    if (offset >= b.len) {
      offset -= b.len;
      continue;
    }
    size_t n = std::min<size_t>(b.len - offset, out.size() - done);
    std::memcpy(out.data() + done, b.data + offset, n);
    done += n;
    offset = 0;
  }
  return done;
}

size_t Chain::write(uint64_t offset, std::span<const uint8_t> in) const {
  size_t done = 0;
  for (const auto& b : writable) {
    if (done == in.size()) break;
    if (offset >= b.len) {
      offset -= b.len;
      continue;
    }
    size_t n = std::min<size_t>(b.len - offset, in.size() - done);
    std::memcpy(b.data + offset, in.data() + done, n);
    done += n;
    offset = 0;
  }
  return done;
}

void Virtqueue::reset() {
  uint16_t max = config_.max_size;
  config_ = QueueConfig{};
  config_.max_size = max;
  last_avail_ = 0;
  next_used_ = 0;
  error_.clear();
  indirect_allowed_ = false;  // features are negotiated again
}

bool Virtqueue::fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  return false;
}

bool Virtqueue::activate(const GuestMemory& mem) {
  const auto& c = config_;
  if (c.size == 0 || c.size > c.max_size || (c.size & (c.size - 1)) != 0) {
    return fail(fmt::format("queue size {} is not a power of two up to {}", c.size, c.max_size));
  }
  if (c.desc_addr % 16 != 0 || c.avail_addr % 2 != 0 || c.used_addr % 4 != 0) return fail("misaligned ring");
  if (mem.translate(c.desc_addr, kDescBytes * c.size) == nullptr ||
      mem.translate(c.avail_addr, 6 + 2ull * c.size) == nullptr ||
      mem.translate(c.used_addr, 6 + 8ull * c.size) == nullptr) {
    return fail("rings lie outside guest RAM");
  }
  return true;
}

bool Virtqueue::walk(const GuestMemory& mem, uint16_t head, Chain& chain) {
  uint64_t table = config_.desc_addr;
  uint32_t table_size = config_.size;
  uint32_t index = head;
  bool indirect = false;
  // One budget for the whole chain, direct and indirect descriptors alike:
  // the spec forbids a driver a chain longer than the queue, and devices
  // size their gather arrays by that (a fresh budget for an indirect table
  // once let 255 + 1024 buffers reach virtio-net's 1024-entry iovec).
  uint32_t budget = config_.size;
  for (;;) {
    if (index >= table_size) return malformed(fmt::format("descriptor index {} out of range {}", index, table_size));
    if (budget-- == 0) return malformed("descriptor chain loops or is longer than the queue");
    Desc d;
    if (!read_desc(mem, table, index, d)) return malformed("descriptor table outside guest RAM");
    if (d.flags & kDescIndirect) {
      // A driver may use indirect tables only if the device offered them.
      if (!indirect_allowed_) return malformed("indirect descriptor, but VIRTIO_F_INDIRECT_DESC was not negotiated");
      if (indirect) return malformed("nested indirect descriptor table");
      if (d.len == 0 || d.len % kDescBytes != 0 || d.len / kDescBytes > kMaxQueueSize) {
        return malformed(fmt::format("indirect table of {} bytes", d.len));
      }
      if (mem.translate(d.addr, d.len) == nullptr) return malformed("indirect table outside guest RAM");
      indirect = true;
      table = d.addr;
      table_size = d.len / kDescBytes;
      index = 0;
      continue;
    }
    uint8_t* p = mem.translate(d.addr, d.len);
    if (p == nullptr) return malformed(fmt::format("buffer {:#x}+{} outside guest RAM", d.addr, d.len));
    if (d.flags & kDescWrite) {
      chain.writable.push_back({p, d.len, true});
    } else {
      if (!chain.writable.empty()) return malformed("readable buffer after a writable one");
      chain.readable.push_back({p, d.len, false});
    }
    if (!(d.flags & kDescNext)) return true;
    index = d.next;
  }
}

bool Virtqueue::malformed(std::string why) {
  ++malformed_chains_;
  return fail(std::move(why));
}

std::optional<Chain> Virtqueue::pop(const GuestMemory& mem) {
  if (!ready()) return std::nullopt;
  const uint8_t* avail = mem.translate(config_.avail_addr, 4 + 2ull * config_.size);
  if (avail == nullptr) return fail("avail ring outside guest RAM"), std::nullopt;
  uint16_t avail_idx = load_u16(avail + 2);
  uint16_t pending = static_cast<uint16_t>(avail_idx - last_avail_);
  if (pending == 0) return std::nullopt;
  if (pending > config_.size) {
    fail(fmt::format("avail index {} is {} ahead of {}, more than the queue size", avail_idx, pending, last_avail_));
    return std::nullopt;
  }
  uint16_t head = load_u16(avail + 4 + 2 * (last_avail_ % config_.size));
  Chain chain;
  chain.head = head;
  if (!walk(mem, head, chain)) return std::nullopt;
  ++last_avail_;
  return chain;
}

void Virtqueue::push_used(const GuestMemory& mem, const Chain& chain, uint32_t written, bool publish) {
  if (!error_.empty()) return;
  for (const auto& b : chain.writable) mem.mark_written(b.data, b.len);
  // Reset (or never set up) since the chain was popped: it went with the
  // old queue, and the ring registers may be half rewritten.
  if (!config_.ready || config_.size == 0) return;
  uint16_t head = chain.head;
  uint8_t* used = mem.translate(config_.used_addr, 4 + 8ull * config_.size);
  if (used == nullptr) {
    fail("used ring outside guest RAM");
    return;
  }
  if (reinterpret_cast<uintptr_t>(used) % 4 != 0) {
    // activate() checked this; an atomic store here would fault (SIGBUS).
    std::fprintf(stderr, "virtqueue %p: used ring %#llx misaligned at push (size %u, ready %d)\n",
                 static_cast<void*>(this), static_cast<unsigned long long>(config_.used_addr), config_.size,
                 config_.ready);
    fail("used ring misaligned");
    return;
  }
  uint8_t* elem = used + 4 + 8 * (next_used_ % config_.size);
  uint32_t id = head;
  std::memcpy(elem, &id, 4);
  std::memcpy(elem + 4, &written, 4);
  ++next_used_;
  mem.mark_written(elem, 8);
  if (publish) publish_at(mem, used);
}

void Virtqueue::publish_used(const GuestMemory& mem) {
  if (!error_.empty() || !config_.ready || config_.size == 0) return;
  uint8_t* used = mem.translate(config_.used_addr, 4);
  if (used == nullptr || reinterpret_cast<uintptr_t>(used) % 4 != 0) return;  // push_used failed the queue
  publish_at(mem, used);
}

void Virtqueue::publish_at(const GuestMemory& mem, uint8_t* used) {
  store_u16(used + 2, next_used_);  // publishes the elements written before
  mem.mark_written(used + 2, 2);
}

std::optional<uint16_t> Virtqueue::driver_avail_idx(const GuestMemory& mem) const {
  if (!ready()) return std::nullopt;
  const uint8_t* avail = mem.translate(config_.avail_addr, 4);
  if (avail == nullptr) return std::nullopt;
  return load_u16(avail + 2);
}

bool Virtqueue::should_notify(const GuestMemory& mem) const {
  const uint8_t* avail = mem.translate(config_.avail_addr, 2);
  if (avail == nullptr) return true;
  return (load_u16(avail) & kAvailNoInterrupt) == 0;
}

}  // namespace snapvm::virtio
