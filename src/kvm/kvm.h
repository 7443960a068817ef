// RAII wrappers for the KVM API: Kvm (/dev/kvm) -> Vm -> Vcpu / Device.
// Move-only; destroying the object closes the file descriptor, which is how
// KVM tears down the VM once every descriptor referring to it is closed.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/mapped_region.h"
#include "base/result.h"
#include "base/unique_fd.h"

namespace snapvm::kvm {

class Vm;
class Vcpu;

class Kvm {
 public:
  static Result<Kvm> open(const std::string& path = "/dev/kvm");

  // KVM_CHECK_EXTENSION: 0 when absent, else the capability's value.
  int check_extension(long cap) const;
  int vcpu_mmap_size() const { return vcpu_mmap_size_; }
  Result<Vm> create_vm(unsigned long type = 0) const;
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  int vcpu_mmap_size_ = 0;
};

class Device {
 public:
  Device() = default;
  explicit Device(UniqueFd fd) : fd_(std::move(fd)) {}
  Status set_attr(uint32_t group, uint64_t attr, const void* value) const;
  Status get_attr(uint32_t group, uint64_t attr, void* value) const;
  bool has_attr(uint32_t group, uint64_t attr) const;
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
};

class Vm {
 public:
  Vm(UniqueFd fd, int vcpu_mmap_size) : fd_(std::move(fd)), vcpu_mmap_size_(vcpu_mmap_size) {}

  Status set_user_memory_region(uint32_t slot, uint64_t gpa, std::span<uint8_t> host, uint32_t flags = 0) const;
  Result<Vcpu> create_vcpu(uint32_t id) const;
  Result<Device> create_device(uint32_t type) const;
  // KVM_IRQ_LINE with an architecture-encoded irq number.
  Status irq_line(uint32_t irq, bool level) const;
  // KVM_IOEVENTFD: a guest write of `len` bytes equal to `value` at MMIO
  // address `gpa` signals `eventfd` inside KVM, and the vCPU runs on
  // without an exit to the VMM.
  Status add_mmio_eventfd(uint64_t gpa, uint32_t len, uint64_t value, int eventfd) const;
  int check_extension(long cap) const;
  int fd() const { return fd_.get(); }

  // Dirty-page logging of a slot registered with KVM_MEM_LOG_DIRTY_PAGES.
  // With manual protect (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, enable before
  // any slot exists), fetching the log leaves pages writable until
  // clear_dirty_log() re-protects them; without it, fetching also clears.
  // Returns false when the kernel does not offer it.
  Result<bool> enable_manual_dirty_protect() const;
  // Fills `bitmap` (one bit per page of the slot, LSB first) with the pages
  // written since the last clear.
  Status get_dirty_log(uint32_t slot, std::span<uint64_t> bitmap) const;
  // Re-protects the pages set in `bitmap` (covering the whole slot).
  Status clear_dirty_log(uint32_t slot, std::span<uint64_t> bitmap, uint64_t pages) const;

 private:
  UniqueFd fd_;
  int vcpu_mmap_size_;
};

class Vcpu {
 public:
  Vcpu(uint32_t id, UniqueFd fd, MappedRegion run) : id_(id), fd_(std::move(fd)), run_(std::move(run)) {}

  uint32_t id() const { return id_; }
  int fd() const { return fd_.get(); }
  kvm_run* run_data() const { return reinterpret_cast<kvm_run*>(run_.data()); }

  // KVM_RUN: returns false when interrupted by a signal (EINTR), so the
  // caller can check why it was kicked.
  Result<bool> run() const;

  // KVM_GET/SET_ONE_REG; the value's width comes from the register id.
  Status get_reg(uint64_t id, std::span<uint8_t> value) const;
  Status set_reg(uint64_t id, std::span<const uint8_t> value) const;
  Result<uint64_t> get_reg64(uint64_t id) const;
  Status set_reg64(uint64_t id, uint64_t value) const;
  // KVM_GET_REG_LIST: every register this vCPU has, in restore order.
  Result<std::vector<uint64_t>> reg_list() const;

  Result<kvm_mp_state> get_mp_state() const;
  Status set_mp_state(kvm_mp_state state) const;

 private:
  uint32_t id_;
  UniqueFd fd_;
  MappedRegion run_;
};

// Width in bytes of a KVM_REG_* register id (KVM_REG_SIZE).
inline size_t reg_size(uint64_t id) { return size_t{1} << ((id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT); }

}  // namespace snapvm::kvm
