// virtio-mmio, version 2 (virtio 1.1, section 4.2.2), serving any
// VirtioDevice. Register accesses arrive on vCPU threads: mu_ orders them
// against each other; queues_mu_ owns the queues (see Transport).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "devices/mmio_bus.h"
#include "devices/virtio/device.h"
#include "state/device_state.h"

namespace snapvm::virtio {

class MmioTransport final : public MmioDevice, public Transport {
 public:
  using IrqFn = std::function<void()>;  // raises the device's edge-triggered interrupt
  // The register a driver writes a queue's index to, to notify it.
  static constexpr uint64_t kQueueNotifyOffset = 0x050;

  MmioTransport(std::unique_ptr<VirtioDevice> device, GuestMemory memory, IrqFn irq);
  // Destroys the device first: a device with its own thread (vsock) may be
  // using the queues until its destructor has joined that thread.
  ~MmioTransport();

  void mmio_read(uint64_t offset, std::span<uint8_t> data) override;
  void mmio_write(uint64_t offset, std::span<const uint8_t> data) override;

  const GuestMemory& memory() const override { return memory_; }
  Mutex& queues_mutex() override RETURN_CAPABILITY(queues_mu_) { return queues_mu_; }
  Virtqueue& queue(size_t index) override REQUIRES(queues_mu_) { return queues_.at(index); }
  void signal_used(size_t queue) override EXCLUDES(queues_mu_);
  void signal_config_change() override;

  VirtioDevice& device() { return *device_; }
  const VirtioDevice& device() const { return *device_; }
  state::VirtioMmioState save() const;
  // Puts the transport and its queues back as saved and, if the driver had
  // finished setup, activates the device again.
  Status restore(const state::VirtioMmioState& saved);
  // Transport, queues and the device's own record, as a snapshot stores it.
  state::DeviceState save_device(uint32_t slot) const;
  // Its counterpart: the device's record (VirtioDevice::restore_specific),
  // then the transport. The record's type must be this device's.
  Status restore_device(const state::DeviceState& saved);
  uint32_t status() const;
  // Registers, each queue's indices (the device's and the driver's) and the
  // device's own account: where a stuck exchange with the driver stands.
  std::string describe() const;

 private:
  void write_status(uint32_t value);
  // Whether queues may take indirect tables: the driver asked for them and
  // the device offered them.
  bool indirect_negotiated() const;
  void reset_locked();
  void write_queue_register(uint64_t offset, uint32_t value) REQUIRES(queues_mu_);

  mutable std::mutex mu_;  // the registers below (not the queues)
  // Several vCPUs may kick the same device at once (Linux notifies outside
  // its queue lock), and devices with threads use queues concurrently with
  // register writes: every queue access holds this.
  mutable Mutex queues_mu_;  // taken after mu_, never before
  std::unique_ptr<VirtioDevice> device_;
  GuestMemory memory_;
  IrqFn irq_;
  std::vector<Virtqueue> queues_ GUARDED_BY(queues_mu_);
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint64_t driver_features_ = 0;
  uint32_t queue_sel_ = 0;
  uint32_t status_ = 0;
  uint32_t interrupt_status_ = 0;
  uint32_t config_generation_ = 0;
};

}  // namespace snapvm::virtio
