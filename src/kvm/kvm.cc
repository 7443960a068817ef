#include "kvm/kvm.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "base/file_io.h"
#include "kvm/host_support.h"
#include "kvm/ioctl.h"

namespace snapvm::kvm {

Result<Kvm> Kvm::open(const std::string& path) {
  if (std::string why = unusable_reason_here(); !why.empty()) return make_error(ErrorCode::kUnsupported, "{}", why);
  Kvm k;
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return tl::unexpected(Error(err == ENOENT ? ErrorCode::kUnsupported : ErrorCode::kIo,
                                fmt::format("open {} (is KVM available on this host?)", path), err));
  }
  k.fd_.reset(fd);
  int version = SNAPVM_TRY(checked_ioctl(fd, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION"));
  if (version != KVM_API_VERSION) {
    return make_error(ErrorCode::kUnsupported, "KVM API version {} (expected {})", version, KVM_API_VERSION);
  }
  k.vcpu_mmap_size_ = SNAPVM_TRY(checked_ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE"));
  return k;
}

int Kvm::check_extension(long cap) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

Result<Vm> Kvm::create_vm(unsigned long type) const {
  int fd = SNAPVM_TRY(checked_ioctl(fd_.get(), KVM_CREATE_VM, type, "KVM_CREATE_VM"));
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return Vm(UniqueFd(fd), vcpu_mmap_size_);
}

Status Device::set_attr(uint32_t group, uint64_t attr, const void* value) const {
  kvm_device_attr a{};
  a.group = group;
  a.attr = attr;
  a.addr = reinterpret_cast<uint64_t>(value);
  auto r = checked_ioctl(fd_.get(), KVM_SET_DEVICE_ATTR, &a, "KVM_SET_DEVICE_ATTR");
  if (!r) return tl::unexpected(std::move(r.error()).context(fmt::format("group {} attr {:#x}", group, attr)));
  return {};
}

Status Device::get_attr(uint32_t group, uint64_t attr, void* value) const {
  kvm_device_attr a{};
  a.group = group;
  a.attr = attr;
  a.addr = reinterpret_cast<uint64_t>(value);
  auto r = checked_ioctl(fd_.get(), KVM_GET_DEVICE_ATTR, &a, "KVM_GET_DEVICE_ATTR");
  if (!r) return tl::unexpected(std::move(r.error()).context(fmt::format("group {} attr {:#x}", group, attr)));
  return {};
}

bool Device::has_attr(uint32_t group, uint64_t attr) const {
  kvm_device_attr a{};
  a.group = group;
  a.attr = attr;
  return ::ioctl(fd_.get(), KVM_HAS_DEVICE_ATTR, &a) == 0;
}

Status Vm::set_user_memory_region(uint32_t slot, uint64_t gpa, std::span<uint8_t> host, uint32_t flags) const {
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.flags = flags;
  r.guest_phys_addr = gpa;
  r.memory_size = host.size();
  r.userspace_addr = reinterpret_cast<uint64_t>(host.data());
  auto res = checked_ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r, "KVM_SET_USER_MEMORY_REGION");
  if (!res) return tl::unexpected(std::move(res.error()).context(fmt::format("slot {} at {:#x}", slot, gpa)));
  return {};
}

Result<bool> Vm::enable_manual_dirty_protect() const {
  int caps = check_extension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
  if (caps <= 0 || (caps & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) == 0) return false;
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
  cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;  // not INITIALLY_SET: the first log would be all ones
  SNAPVM_TRY(checked_ioctl(fd_.get(), KVM_ENABLE_CAP, &cap, "KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2)"));
  return true;
}

Status Vm::get_dirty_log(uint32_t slot, std::span<uint64_t> bitmap) const {
  kvm_dirty_log log{};
  log.slot = slot;
  log.dirty_bitmap = bitmap.data();
  SNAPVM_TRY(checked_ioctl(fd_.get(), KVM_GET_DIRTY_LOG, &log, "KVM_GET_DIRTY_LOG"));
  return {};
}

Status Vm::clear_dirty_log(uint32_t slot, std::span<uint64_t> bitmap, uint64_t pages) const {
  // One call from the first set word to the last: KVM re-protects only the
  // set bits and flushes the TLB once per call, which costs more than
  // walking the zero words in between (notably on a nested host).
  uint64_t words = std::min<uint64_t>((pages + 63) / 64, bitmap.size());
  uint64_t first = 0;
  while (first < words && bitmap[first] == 0) ++first;
  if (first == words) return {};
  uint64_t last = words;
  while (bitmap[last - 1] == 0) --last;
  kvm_clear_dirty_log c{};
  c.slot = slot;
  c.first_page = first * 64;  // KVM wants multiples of 64, or the slot's end
  c.num_pages = static_cast<uint32_t>(std::min<uint64_t>(last * 64, pages) - first * 64);
  c.dirty_bitmap = bitmap.data() + first;
  SNAPVM_TRY(checked_ioctl(fd_.get(), KVM_CLEAR_DIRTY_LOG, &c, "KVM_CLEAR_DIRTY_LOG"));
  return {};
}

Result<Vcpu> Vm::create_vcpu(uint32_t id) const {
  int fd = SNAPVM_TRY(checked_ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id), "KVM_CREATE_VCPU"));
  UniqueFd owned(fd);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  void* p = ::mmap(nullptr, static_cast<size_t>(vcpu_mmap_size_), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return errno_error(fmt::format("mmap kvm_run of vCPU {}", id));
  return Vcpu(id, std::move(owned), MappedRegion(p, static_cast<size_t>(vcpu_mmap_size_)));
}

Result<Device> Vm::create_device(uint32_t type) const {
  kvm_create_device d{};
  d.type = type;
  SNAPVM_TRY(checked_ioctl(fd_.get(), KVM_CREATE_DEVICE, &d, "KVM_CREATE_DEVICE"));
  ::fcntl(static_cast<int>(d.fd), F_SETFD, FD_CLOEXEC);
  return Device(UniqueFd(static_cast<int>(d.fd)));
}

Status Vm::irq_line(uint32_t irq, bool level) const {
  kvm_irq_level l{};
  l.irq = irq;
  l.level = level ? 1 : 0;
  SNAPVM_TRY(checked_ioctl(fd_.get(), KVM_IRQ_LINE, &l, "KVM_IRQ_LINE"));
  return {};
}

Status Vm::add_mmio_eventfd(uint64_t gpa, uint32_t len, uint64_t value, int eventfd) const {
  kvm_ioeventfd e{};
  e.addr = gpa;
  e.len = len;
  e.datamatch = value;
  e.fd = eventfd;
  e.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
  SNAPVM_TRY(checked_ioctl(fd_.get(), KVM_IOEVENTFD, &e, "KVM_IOEVENTFD"));
  return {};
}

int Vm::check_extension(long cap) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

Result<bool> Vcpu::run() const {
  if (::ioctl(fd_.get(), KVM_RUN, 0) == 0) return true;
  if (errno == EINTR || errno == EAGAIN) return false;
  return errno_error(fmt::format("KVM_RUN on vCPU {}", id_));
}

Status Vcpu::get_reg(uint64_t id, std::span<uint8_t> value) const {
  if (value.size() != reg_size(id)) {
    return make_error(ErrorCode::kInvalidArgument, "register {:#x} is {} bytes, buffer {}", id, reg_size(id), value.size());
  }
  kvm_one_reg r{id, reinterpret_cast<uint64_t>(value.data())};
  if (::ioctl(fd_.get(), KVM_GET_ONE_REG, &r) != 0) {
    return errno_error(fmt::format("KVM_GET_ONE_REG {:#x} on vCPU {}", id, id_));
  }
  return {};
}

Status Vcpu::set_reg(uint64_t id, std::span<const uint8_t> value) const {
  if (value.size() != reg_size(id)) {
    return make_error(ErrorCode::kInvalidArgument, "register {:#x} is {} bytes, value {}", id, reg_size(id), value.size());
  }
  kvm_one_reg r{id, reinterpret_cast<uint64_t>(value.data())};
  if (::ioctl(fd_.get(), KVM_SET_ONE_REG, &r) != 0) {
    return errno_error(fmt::format("KVM_SET_ONE_REG {:#x} on vCPU {}", id, id_));
  }
  return {};
}

Result<uint64_t> Vcpu::get_reg64(uint64_t id) const {
  uint64_t v = 0;
  SNAPVM_CHECK_OK(get_reg(id, {reinterpret_cast<uint8_t*>(&v), sizeof v}));
  return v;
}

Status Vcpu::set_reg64(uint64_t id, uint64_t value) const {
  return set_reg(id, {reinterpret_cast<const uint8_t*>(&value), sizeof value});
}

Result<std::vector<uint64_t>> Vcpu::reg_list() const {
  // First call with n = 0 learns the count (E2BIG), the second fills it.
  kvm_reg_list probe{};
  probe.n = 0;
  if (::ioctl(fd_.get(), KVM_GET_REG_LIST, &probe) == 0) return std::vector<uint64_t>{};
  if (errno != E2BIG) return errno_error(fmt::format("KVM_GET_REG_LIST on vCPU {}", id_));
  std::vector<uint64_t> buf(probe.n + 1);
  auto* list = reinterpret_cast<kvm_reg_list*>(buf.data());
  list->n = probe.n;
  if (::ioctl(fd_.get(), KVM_GET_REG_LIST, list) != 0) {
    return errno_error(fmt::format("KVM_GET_REG_LIST on vCPU {}", id_));
  }
  return std::vector<uint64_t>(buf.begin() + 1, buf.begin() + 1 + list->n);
}

Result<kvm_mp_state> Vcpu::get_mp_state() const {
  kvm_mp_state s{};
  SNAPVM_TRY(checked_ioctl(fd_.get(), KVM_GET_MP_STATE, &s, "KVM_GET_MP_STATE"));
  return s;
}

Status Vcpu::set_mp_state(kvm_mp_state state) const {
  SNAPVM_TRY(checked_ioctl(fd_.get(), KVM_SET_MP_STATE, &state, "KVM_SET_MP_STATE"));
  return {};
}

}  // namespace snapvm::kvm
