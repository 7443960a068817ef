// What a virtio device implements; the virtio-mmio transport does the rest
// (kvmtool's one-transport-many-devices shape).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/thread_annotations.h"
#include "devices/guest_memory.h"
#include "devices/virtio/virtqueue.h"

namespace snapvm::virtio {

// The virtio device types this VMM has (virtio 1.2, section 5).
enum class DeviceType : uint32_t { kNet = 1, kBlock = 2, kRng = 4, kVsock = 19 };

inline constexpr uint64_t kFeatureVersion1 = 1ull << 32;
inline constexpr uint64_t kFeatureIndirectDesc = 1ull << 28;

// What the device may use from the transport while it is active.
//
// One lock owns the state of every queue of a device (configuration,
// indices, errors): the transport's register writes and reset, and the
// device's queue processing on any thread, all hold queues_mutex(). It is
// taken after the transport's register lock and after a device's own lock,
// and never held across signal_used(), which takes the register lock.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual const GuestMemory& memory() const = 0;
  virtual Mutex& queues_mutex() = 0;
  virtual Virtqueue& queue(size_t index) REQUIRES(queues_mutex()) = 0;
  // Tells the driver that used buffers are waiting (a used-buffer interrupt).
  virtual void signal_used(size_t queue) EXCLUDES(queues_mutex()) = 0;
  virtual void signal_config_change() = 0;
};

// Serves every chain waiting on queue `index`: `handle(chain)` does the work
// and returns the bytes it wrote for the driver; each chain goes back to the
// driver, and one interrupt covers the batch (or reports a broken queue).
template <typename Handle>
void serve_queue(Transport& transport, size_t index, Handle handle) {
  const GuestMemory& mem = transport.memory();
  bool any = false, broken = false;
  {
    MutexLock lock(transport.queues_mutex());
    Virtqueue& q = transport.queue(index);
    while (auto chain = q.pop(mem)) {
      q.push_used(mem, *chain, handle(*chain));
      any = true;
    }
    broken = !q.error().empty();
  }
  if (any || broken) transport.signal_used(index);
}

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;
  virtual uint32_t device_id() const = 0;
  virtual uint64_t device_features() const = 0;  // VERSION_1 is added by the transport
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;
  // An eventfd the device's own thread watches for the driver's
  // notifications of `queue`, or -1 to be told through queue_notify() on
  // the notifying vCPU. The VMM has KVM signal it directly (ioeventfd).
  virtual int queue_notify_fd(size_t queue) const {
    (void)queue;
    return -1;
  }
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) const {
    std::memset(data.data(), 0, data.size());
    (void)offset;
  }
  virtual void write_config(uint64_t offset, std::span<const uint8_t> data) {
    (void)offset;
    (void)data;
  }
  // The driver set DRIVER_OK: queues are configured and `transport` usable.
  virtual void activate(Transport& transport, uint64_t driver_features) = 0;
  // The driver kicked queue `index`.
  virtual void queue_notify(size_t index) = 0;
  // The driver reset the device: drop everything in flight.
  virtual void reset() = 0;
  // While paused, a device with its own threads must not touch the queues or
  // guest memory, nor raise interrupts (the VM is being captured): when
  // set_paused(true) returns, it has stopped. Devices that act only when a
  // vCPU kicks them need nothing: paused vCPUs kick nobody.
  virtual void set_paused(bool paused) { (void)paused; }
  // The device comes back from a snapshot: called before activate(), so
  // that it knows before its queues go live that the driver resumes a
  // session the device never saw (the guest may hold stale connections).
  virtual void restored() {}
  // Device-specific state for a snapshot, encoded by the device (empty when
  // the transport and queues say everything).
  virtual std::vector<uint8_t> save_specific() const { return {}; }
  // Its counterpart, before the transport's state is loaded: a record the
  // device cannot read is refused (snapshots are untrusted). A device that
  // saves nothing takes nothing.
  virtual Status restore_specific(std::span<const uint8_t> saved) {
    if (saved.empty()) return {};
    return make_error(ErrorCode::kDataLoss, "virtio device type {}: {} bytes of device state, and it keeps none",
                      device_id(), saved.size());
  }
  // What the device is waiting for, in words, for `snapvm info` when a guest
  // stops answering (empty when the transport's view says it all).
  virtual std::string describe() const { return {}; }
};

}  // namespace snapvm::virtio
