#include "devices/virtio/mmio_transport.h"

#include <cstring>

#include <fmt/format.h>

namespace snapvm::virtio {
namespace {

enum Reg : uint64_t {
  kMagic = 0x000,
  kVersion = 0x004,
  kDeviceId = 0x008,
  kVendorId = 0x00c,
  kDeviceFeatures = 0x010,
  kDeviceFeaturesSel = 0x014,
  kDriverFeatures = 0x020,
  kDriverFeaturesSel = 0x024,
  kQueueSel = 0x030,
  kQueueNumMax = 0x034,
  kQueueNum = 0x038,
  kQueueReady = 0x044,
  kQueueNotify = 0x050,
  kInterruptStatus = 0x060,
  kInterruptAck = 0x064,
  kStatus = 0x070,
  kQueueDescLow = 0x080,
  kQueueDescHigh = 0x084,
  kQueueDriverLow = 0x090,
  kQueueDriverHigh = 0x094,
  kQueueDeviceLow = 0x0a0,
  kQueueDeviceHigh = 0x0a4,
  kConfigGeneration = 0x0fc,
  kConfig = 0x100,
};

constexpr uint32_t kMagicValue = 0x74726976;  // "virt"
constexpr uint32_t kVendor = 0x4d565053;      // "SPVM"
constexpr uint32_t kStatusDriverOk = 4;
constexpr uint32_t kStatusFeaturesOk = 8;
constexpr uint32_t kStatusNeedsReset = 0x40;
constexpr uint32_t kIntUsedBuffer = 1;
constexpr uint32_t kIntConfigChange = 2;

uint32_t load32(std::span<const uint8_t> d) {
  uint32_t v = 0;
  std::memcpy(&v, d.data(), std::min<size_t>(4, d.size()));
  return v;
}

void set_low(uint64_t& v, uint32_t low) { v = (v & 0xffffffff00000000ull) | low; }
void set_high(uint64_t& v, uint32_t high) { v = (v & 0xffffffffull) | (uint64_t{high} << 32); }

}  // namespace

MmioTransport::~MmioTransport() { device_.reset(); }

MmioTransport::MmioTransport(std::unique_ptr<VirtioDevice> device, GuestMemory memory, IrqFn irq)
    : device_(std::move(device)), memory_(std::move(memory)), irq_(std::move(irq)) {
  MutexLock lock(queues_mu_);
  for (uint16_t max : device_->queue_max_sizes()) queues_.emplace_back(max);
}

uint32_t MmioTransport::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

std::string MmioTransport::describe() const {
  std::string out;
  {
    std::lock_guard lock(mu_);
    out = fmt::format("virtio type {}: status {:#x}, interrupt status {:#x}", device_->device_id(), status_,
                      interrupt_status_);
    MutexLock queues(queues_mu_);
    for (size_t i = 0; i < queues_.size(); ++i) {
      const Virtqueue& q = queues_[i];
      if (!q.config().ready) {
        if (q.malformed_chains() != 0) out += fmt::format("; queue {}: not ready, {} malformed chains", i, q.malformed_chains());
        continue;
      }
      auto driver = q.driver_avail_idx(memory_);
      out += fmt::format("; queue {}: taken {}, used {}, driver made available {}{}", i, q.last_avail_idx(),
                         q.next_used_idx(), driver ? fmt::to_string(*driver) : std::string("?"),
                         q.error().empty() ? "" : " (broken: " + q.error() + ")");
      if (q.malformed_chains() != 0) out += fmt::format(", {} malformed chains", q.malformed_chains());
    }
  }
  // Outside the registers' lock: a device takes its own lock first.
  std::string device = device_->describe();
  return device.empty() ? out : out + "; " + device;
}

void MmioTransport::mmio_read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mu_);
  if (offset >= kConfig) {
    device_->read_config(offset - kConfig, data);
    return;
  }
  uint32_t v = 0;
  uint64_t features = device_->device_features() | kFeatureVersion1;
  MutexLock queues(queues_mu_);
  Virtqueue* q = queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
  switch (offset) {
    case kMagic: v = kMagicValue; break;
    case kVersion: v = 2; break;
    case kDeviceId: v = device_->device_id(); break;
    case kVendorId: v = kVendor; break;
    case kDeviceFeatures: v = device_features_sel_ == 0 ? uint32_t(features) : device_features_sel_ == 1 ? uint32_t(features >> 32) : 0; break;
    case kQueueNumMax: v = q ? q->config().max_size : 0; break;
    case kQueueReady: v = q && q->config().ready ? 1 : 0; break;
    case kInterruptStatus: v = interrupt_status_; break;
    case kStatus: v = status_; break;
    case kConfigGeneration: v = config_generation_; break;
    default: break;  // write-only or reserved: read as zero
  }
  std::memset(data.data(), 0, data.size());
  std::memcpy(data.data(), &v, std::min<size_t>(4, data.size()));
}

void MmioTransport::mmio_write(uint64_t offset, std::span<const uint8_t> data) {
  std::unique_lock lock(mu_);
  if (offset >= kConfig) {
    device_->write_config(offset - kConfig, data);
    return;
  }
  uint32_t v = load32(data);
  switch (offset) {
    case kDeviceFeaturesSel: device_features_sel_ = v; break;
    case kDriverFeatures:
      if ((status_ & kStatusFeaturesOk) == 0) {
        if (driver_features_sel_ == 0) set_low(driver_features_, v);
        if (driver_features_sel_ == 1) set_high(driver_features_, v);
      }
      break;
    case kDriverFeaturesSel: driver_features_sel_ = v; break;
    case kQueueSel: queue_sel_ = v; break;
    case kQueueNum:
    case kQueueReady:
    case kQueueDescLow:
    case kQueueDescHigh:
    case kQueueDriverLow:
    case kQueueDriverHigh:
    case kQueueDeviceLow:
    case kQueueDeviceHigh: {
      // The spec forbids rewriting a queue once the driver is running; a
      // guest that tries is ignored rather than allowed to move a ring
      // under a device thread.
      if (status_ & kStatusDriverOk) break;
      MutexLock queues(queues_mu_);
      write_queue_register(offset, v);
      break;
    }
    case kQueueNotify:
      if (v < device_->queue_max_sizes().size() && (status_ & kStatusDriverOk) != 0) {
        lock.unlock();  // the device calls back into signal_used
        device_->queue_notify(v);
      }
      break;
    case kInterruptAck: interrupt_status_ &= ~v; break;
    case kStatus: write_status(v); break;
    default: break;
  }
}

void MmioTransport::write_queue_register(uint64_t offset, uint32_t v) {
  if (queue_sel_ >= queues_.size()) return;
  Virtqueue& q = queues_[queue_sel_];
  if (offset == kQueueReady) {
    if (v == 1 && !q.config().ready) {
      q.config().ready = true;
      q.set_indirect_allowed(indirect_negotiated());
      q.activate(memory_);
    } else if (v == 0) {
      q.config().ready = false;
    }
    return;
  }
  if (q.config().ready) return;  // a live queue keeps its size and rings
  switch (offset) {
    case kQueueNum: q.config().size = static_cast<uint16_t>(std::min<uint32_t>(v, 0xffff)); break;
    case kQueueDescLow: set_low(q.config().desc_addr, v); break;
    case kQueueDescHigh: set_high(q.config().desc_addr, v); break;
    case kQueueDriverLow: set_low(q.config().avail_addr, v); break;
    case kQueueDriverHigh: set_high(q.config().avail_addr, v); break;
    case kQueueDeviceLow: set_low(q.config().used_addr, v); break;
    case kQueueDeviceHigh: set_high(q.config().used_addr, v); break;
    default: break;
  }
}

bool MmioTransport::indirect_negotiated() const {
  // Masked with what the device offers: the driver may rewrite its feature
  // bits at any time, also after FEATURES_OK checked them.
  return (driver_features_ & device_->device_features() & kFeatureIndirectDesc) != 0;
}

void MmioTransport::write_status(uint32_t value) {
  if (value == 0) {
    reset_locked();
    return;
  }
  uint32_t before = status_;
  if ((value & kStatusFeaturesOk) && !(before & kStatusFeaturesOk)) {
    // Refuse features we never offered, and insist on virtio 1.
    uint64_t offered = device_->device_features() | kFeatureVersion1;
    if ((driver_features_ & ~offered) != 0 || (driver_features_ & kFeatureVersion1) == 0) {
      value &= ~kStatusFeaturesOk;
    }
  }
  status_ = value;
  if ((value & kStatusDriverOk) && !(before & kStatusDriverOk)) device_->activate(*this, driver_features_);
}

void MmioTransport::reset_locked() {
  device_->reset();  // a device with a thread stops using the queues first
  {
    MutexLock queues(queues_mu_);
    for (auto& q : queues_) q.reset();
  }
  status_ = 0;
  interrupt_status_ = 0;
  driver_features_ = 0;
  device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
}

void MmioTransport::signal_used(size_t index) {
  {
    std::lock_guard lock(mu_);
    MutexLock queues(queues_mu_);
    if (index < queues_.size() && !queues_[index].error().empty()) {
      // The guest broke this queue: ask the driver for a reset instead.
      status_ |= kStatusNeedsReset;
      interrupt_status_ |= kIntConfigChange;
    } else {
      interrupt_status_ |= kIntUsedBuffer;
    }
  }
  if (irq_) irq_();
}

void MmioTransport::signal_config_change() {
  {
    std::lock_guard lock(mu_);
    interrupt_status_ |= kIntConfigChange;
    ++config_generation_;
  }
  if (irq_) irq_();
}

state::VirtioMmioState MmioTransport::save() const {
  std::lock_guard lock(mu_);
  state::VirtioMmioState s;
  s.device_id = device_->device_id();
  s.device_features = device_->device_features() | kFeatureVersion1;
  s.driver_features = driver_features_;
  s.device_features_sel = device_features_sel_;
  s.driver_features_sel = driver_features_sel_;
  s.queue_sel = queue_sel_;
  s.status = status_;
  s.interrupt_status = interrupt_status_;
  s.config_generation = config_generation_;
  MutexLock queues(queues_mu_);
  for (const auto& q : queues_) {
    s.queues.push_back({q.config().max_size, q.config().size, q.config().ready, q.config().desc_addr,
                        q.config().avail_addr, q.config().used_addr, q.last_avail_idx(), q.next_used_idx()});
  }
  return s;
}

state::DeviceState MmioTransport::save_device(uint32_t slot) const {
  state::DeviceState d;
  d.slot = slot;
  d.transport = save();
  d.device_specific = device_->save_specific();
  return d;
}

Status MmioTransport::restore_device(const state::DeviceState& saved) {
  if (!saved.transport) return make_error(ErrorCode::kDataLoss, "device slot {} has no virtio transport state", saved.slot);
  if (saved.transport->device_id != device_->device_id()) {
    return make_error(ErrorCode::kDataLoss, "device slot {} holds virtio type {}, the snapshot says {}", saved.slot,
                      device_->device_id(), saved.transport->device_id);
  }
  SNAPVM_CHECK_OK(device_->restore_specific(saved.device_specific));
  return restore(*saved.transport);
}

Status MmioTransport::restore(const state::VirtioMmioState& saved) {
  std::lock_guard lock(mu_);
  if (saved.queues.size() != device_->queue_max_sizes().size()) {
    return make_error(ErrorCode::kDataLoss, "virtio device {} has {} queues, the snapshot {}", saved.device_id,
                      device_->queue_max_sizes().size(), saved.queues.size());
  }
  // A snapshot may not grant its driver features this device never offers
  // (indirect descriptors, say): the live transport refuses them at
  // FEATURES_OK, and a restore is no back door around that.
  const uint64_t offered = device_->device_features() | kFeatureVersion1;
  if ((saved.driver_features & ~offered) != 0) {
    return make_error(ErrorCode::kDataLoss, "virtio device {}: the snapshot's driver features {:#x} include {:#x}, never offered",
                      saved.device_id, saved.driver_features, saved.driver_features & ~offered);
  }
  driver_features_ = saved.driver_features;
  device_features_sel_ = saved.device_features_sel;
  driver_features_sel_ = saved.driver_features_sel;
  queue_sel_ = saved.queue_sel;
  status_ = saved.status;
  interrupt_status_ = saved.interrupt_status;
  config_generation_ = saved.config_generation;
  {
    MutexLock queues(queues_mu_);
    for (size_t i = 0; i < queues_.size(); ++i) {
      const auto& q = saved.queues[i];
      Virtqueue& vq = queues_[i];
      vq.reset();
      if (q.size > vq.config().max_size) {
        return make_error(ErrorCode::kDataLoss, "queue {} size {} exceeds {}", i, q.size, vq.config().max_size);
      }
      vq.config().size = q.size;
      vq.config().desc_addr = q.desc_addr;
      vq.config().avail_addr = q.avail_addr;
      vq.config().used_addr = q.used_addr;
      vq.config().ready = q.ready;
      vq.set_indices(q.last_avail_idx, q.next_used_idx);
      vq.set_indirect_allowed(indirect_negotiated());
      if (q.ready) vq.activate(memory_);
    }
  }
  if (status_ & kStatusDriverOk) {
    // In this order: vsock's worker starts host connections as soon as it
    // is active, and one started before it knew of the restore reached the
    // guest ahead of the transport-reset event, which then tore it down
    // (about 1 in 60 commands run at once on a clone closed early).
    device_->restored();
    device_->activate(*this, driver_features_);
  }
  return {};
}

}  // namespace snapvm::virtio
