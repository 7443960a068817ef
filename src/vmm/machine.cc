#include "vmm/machine.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <optional>

#include "arch/gic_state.h"
#include "arch/platform.h"
#include "arch/vcpu_state.h"
#include "base/file_io.h"
#include "base/memory_faults.h"
#include "base/paths.h"
#include "devices/mmio_bus.h"
#include "devices/pl011.h"
#include "devices/virtio/block.h"
#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"
#include "kvm/kvm.h"
#include "sandbox/seccomp.h"
#include "snapshot/diff_writer.h"
#include "snapshot/reader.h"
#include "state/snapshot_state.h"

#include <sys/utsname.h>
#include <time.h>

namespace snapvm {
namespace {

// A signal that only interrupts KVM_RUN; its handler does nothing.
int kick_signal() { return SIGRTMIN + 1; }

void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    ::sigaction(kick_signal(), &sa, nullptr);
  });
}

Result<std::vector<uint8_t>> read_whole(const std::string& path, const char* what, uint64_t limit) {
  auto fd = open_file(path, O_RDONLY);
  if (!fd) return tl::unexpected(std::move(fd.error()).context(what));
  uint64_t size = SNAPVM_TRY(file_size(fd->get()));
  if (size > limit) return make_error(ErrorCode::kInvalidArgument, "{} {} is {} bytes, over the {} MiB limit", what, path, size, limit >> 20);
  std::vector<uint8_t> bytes(size);
  SNAPVM_CHECK_OK(pread_exact(fd->get(), bytes, 0));
  return bytes;
}

}  // namespace

std::string_view to_string(ExitReason r) {
  switch (r) {
    case ExitReason::kPowerOff: return "power off";
    case ExitReason::kReset: return "reset";
    case ExitReason::kCrash: return "crash";
    case ExitReason::kStopped: return "stopped";
  }
  return "unknown";
}

struct Machine::State {
  MachineConfig config;
  kvm::Kvm kvm;
  std::optional<kvm::Vm> vm;
  MappedRegion ram;
  std::optional<arch::Platform> platform;
  std::vector<kvm::Vcpu> vcpus;
  MmioBus bus;
  std::unique_ptr<Pl011> uart;
  std::vector<std::unique_ptr<virtio::MmioTransport>> virtio;
  std::vector<arch::VirtioMmioNode> virtio_nodes;
  virtio::Vsock* vsock = nullptr;  // owned by its transport
  std::vector<std::string> virtio_backends;  // per virtio slot: image or socket path, for snapshots

  // Dirty tracking: what KVM logs plus what the VMM marks, gathered at each
  // snapshot into the pages written since `dirty_base`.
  struct DirtyTracking {
    bool manual_protect = false;     // KVM_CLEAR_DIRTY_LOG re-protects, GET does not
    std::unique_ptr<AtomicBitmap> vmm;  // pages devices wrote, 4 KiB each
    DirtyBitmap since_base;          // 4 KiB pages written since the base
    std::string base_path;           // empty: no base yet (tracking from boot)
    uint64_t base_checksum = 0;      // the base's metadata checksum: its identity
  };
  std::optional<DirtyTracking> dirty;
  bool ram_registered = false;  // with the SIGBUS reporter (RAM mapped from a file)
  std::mutex snapshot_mu;  // one snapshot at a time

  Status add_virtio(std::unique_ptr<virtio::VirtioDevice> device, std::string backend = {});
  // Moves KVM's log and the VMM's marks into dirty->since_base and
  // re-protects, so the next interval starts now. Only while paused.
  Status collect_dirty();
  Result<state::SnapshotState> capture_state() const;
  // Refuses a diff base that is not the snapshot dirty pages count from.
  Status check_diff_base(const std::string& diff_from) const;
  // Captures the paused VM and writes it: in full, or finishing `diff`.
  Result<WriteStats> write_snapshot(const std::string& path, std::optional<DiffInProgress> diff,
                                    LiveSnapshot* timing = nullptr);

  std::mutex mu;
  std::condition_variable cv;
  std::vector<pthread_t> threads;  // guarded by mu
  // Per thread, set under mu when its loop has returned: it takes no more
  // signals, and pthread_kill must not reach it once joined.
  std::vector<bool> exited;
  std::atomic<bool> stopping{false};
  std::atomic<bool> pausing{false};
  size_t parked = 0;
  std::optional<ExitReason> exit;
  std::optional<Error> error;

  void stop_all();
  void finish(std::optional<ExitReason> reason, std::optional<Error> err);
  void vcpu_loop(size_t index);
};

Status Machine::State::add_virtio(std::unique_ptr<virtio::VirtioDevice> device, std::string backend) {
  uint32_t slot = static_cast<uint32_t>(virtio.size());
  if (slot >= arch::kVirtioMmioSlots) {
    return make_error(ErrorCode::kInvalidArgument, "more than {} virtio devices", arch::kVirtioMmioSlots);
  }
  arch::VirtioMmioNode node = arch::Platform::virtio_slot(slot);
  GuestMemory memory({{arch::kRamBase, ram.span(), dirty ? dirty->vmm.get() : nullptr}});
  uint32_t line = arch::Platform::spi_line(node.spi);
  const kvm::Vm* vm_ptr = &*vm;
  // Edge-triggered SPI: a rising edge per notification.
  auto irq = [vm_ptr, line] {
    (void)vm_ptr->irq_line(line, true);
    (void)vm_ptr->irq_line(line, false);
  };
  virtio.push_back(std::make_unique<virtio::MmioTransport>(std::move(device), std::move(memory), irq));
  SNAPVM_CHECK_OK(bus.add(node.base, node.size, virtio.back().get()));
  virtio_nodes.push_back(node);
  virtio_backends.push_back(std::move(backend));
  return {};
}

Status Machine::State::collect_dirty() {
  const uint64_t host_page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t kvm_pages = ram.size() / host_page;
  std::vector<uint64_t> log((kvm_pages + 63) / 64, 0);
  SNAPVM_CHECK_OK(vm->get_dirty_log(0, log));
  if (dirty->manual_protect) SNAPVM_CHECK_OK(vm->clear_dirty_log(0, log, kvm_pages));
  auto& words = dirty->since_base.words();
  if (host_page == GuestMemory::kDirtyPageBytes) {
    for (size_t i = 0; i < log.size() && i < words.size(); ++i) words[i] |= log[i];
  } else {  // a larger host page covers several 4 KiB pages
    const uint64_t per = host_page / GuestMemory::kDirtyPageBytes;
    for (uint64_t p = 0; p < kvm_pages; ++p) {
      if ((log[p / 64] >> (p % 64)) & 1) {
        for (uint64_t q = p * per; q < (p + 1) * per; ++q) dirty->since_base.set(q);
      }
    }
  }
  dirty->vmm->drain_into(words);
  return {};
}

void Machine::State::stop_all() {
  stopping = true;
  std::lock_guard lock(mu);
  for (size_t i = 0; i < threads.size(); ++i) {
    if (exited[i]) continue;
    vcpus[i].run_data()->immediate_exit = 1;
    ::pthread_kill(threads[i], kick_signal());
  }
}

void Machine::State::finish(std::optional<ExitReason> reason, std::optional<Error> err) {
  {
    std::lock_guard lock(mu);
    if (!exit && !error) {
      exit = reason;
      if (err) error = std::move(err);
    }
  }
  cv.notify_all();
  stop_all();
}

void Machine::State::vcpu_loop(size_t index) {
  const kvm::Vcpu& vcpu = vcpus[index];
  kvm_run* run = vcpu.run_data();
  bool mmio_pending = false;
  while (!stopping.load()) {
    if (pausing.load()) {
      if (mmio_pending) {
        // KVM completes an MMIO access (loads a read's value, steps past the
        // instruction) only on the next KVM_RUN. Do that now, with
        // immediate_exit so no guest instruction runs, or the registers a
        // snapshot captures would be half-way through an instruction.
        run->immediate_exit = 1;
        auto r = vcpu.run();
        if (!r) {
          finish(std::nullopt, std::move(r.error()));
          return;
        }
        mmio_pending = false;
      }
      std::unique_lock lock(mu);
      ++parked;
      cv.notify_all();
      cv.wait(lock, [&] { return !pausing.load() || stopping.load(); });
      --parked;
      // A pause that came while this thread slept (resume then pause at
      // once) set immediate_exit again; leaving it set would make every
      // KVM_RUN return at once and the guest never run. Cleared under the
      // lock, so a pause from now on sets it after this and is seen.
      if (!stopping.load()) run->immediate_exit = 0;
      continue;
    }
    auto r = vcpu.run();
    if (!r) {
      finish(std::nullopt, std::move(r.error()));
      return;
    }
    mmio_pending = false;
    if (!*r) {
      // Kicked. A pause that was rolled back (it timed out) left
      // immediate_exit set; clear it unless a pause or stop wants it now.
      // Under mu, so a pause that sets it concurrently is not undone.
      std::lock_guard lock(mu);
      if (!pausing.load() && !stopping.load()) run->immediate_exit = 0;
      continue;
    }
    switch (run->exit_reason) {
      case KVM_EXIT_MMIO: {
        mmio_pending = true;
        auto& m = run->mmio;
        if (m.is_write) {
          bus.write(m.phys_addr, {m.data, m.len});
        } else {
          bus.read(m.phys_addr, {m.data, m.len});
        }
        break;
      }
      case KVM_EXIT_SYSTEM_EVENT:
        switch (run->system_event.type) {
          case KVM_SYSTEM_EVENT_SHUTDOWN: finish(ExitReason::kPowerOff, std::nullopt); return;
          case KVM_SYSTEM_EVENT_RESET: finish(ExitReason::kReset, std::nullopt); return;
          default: finish(ExitReason::kCrash, std::nullopt); return;
        }
      case KVM_EXIT_INTR:
        break;
      case KVM_EXIT_FAIL_ENTRY:
        finish(std::nullopt, Error(ErrorCode::kIo, fmt::format("vCPU {}: KVM_EXIT_FAIL_ENTRY, reason {:#x}", index,
                                                               run->fail_entry.hardware_entry_failure_reason)));
        return;
      case KVM_EXIT_INTERNAL_ERROR:
        finish(std::nullopt, Error(ErrorCode::kIo, fmt::format("vCPU {}: KVM internal error {}", index,
                                                               run->internal.suberror)));
        return;
      default:
        finish(std::nullopt, Error(ErrorCode::kUnsupported, fmt::format("vCPU {}: unhandled exit reason {}", index,
                                                                        run->exit_reason)));
        return;
    }
  }
}

Machine::Machine(std::unique_ptr<State> state) : s_(std::move(state)) {}

Machine::~Machine() {
  if (!s_) return;
  s_->stop_all();
  for (pthread_t t : s_->threads) ::pthread_join(t, nullptr);
  // Devices first: their threads write guest memory and mark dirty pages
  // until joined, so RAM and the dirty bitmap must outlive them.
  s_->virtio.clear();
  if (s_->ram_registered) unregister_guest_memory(s_->ram.data());
}

uint64_t Machine::mem_bytes() const { return s_->ram.size(); }
const std::string& Machine::vsock_path() const { return s_->config.vsock_path; }
uint32_t Machine::vcpu_count() const { return static_cast<uint32_t>(s_->vcpus.size()); }
std::vector<state::PortForward> Machine::port_forwards() const {
  return s_->vsock != nullptr ? s_->vsock->forwards() : std::vector<state::PortForward>{};
}

// Everything but guest memory contents: KVM, vCPUs, GIC, UART, devices.
Result<std::unique_ptr<Machine::State>> Machine::build(const MachineConfig& c, MappedRegion ram) {
  auto s = std::make_unique<State>();
  s->config = c;
  s->kvm = SNAPVM_TRY(kvm::Kvm::open());
  uint32_t max = arch::max_vcpus(s->kvm);
  if (c.vcpus > max) {
    return make_error(ErrorCode::kInvalidArgument, "{} vCPUs requested; this host and machine support at most {}",
                      c.vcpus, max);
  }
  s->vm.emplace(SNAPVM_TRY(s->kvm.create_vm()));
  s->ram = std::move(ram);
  // Guest RAM has no place in a core dump of the VMM: it is the guest's
  // data, and gigabytes of it.
  ::madvise(s->ram.data(), s->ram.size(), MADV_DONTDUMP);
  uint32_t slot_flags = 0;
  if (c.track_dirty) {
    if (s->ram.size() % GuestMemory::kDirtyPageBytes != 0 || ::sysconf(_SC_PAGESIZE) % GuestMemory::kDirtyPageBytes != 0) {
      return make_error(ErrorCode::kUnsupported, "dirty tracking needs RAM and host pages in multiples of 4 KiB");
    }
    State::DirtyTracking d;
    d.manual_protect = SNAPVM_TRY(s->vm->enable_manual_dirty_protect());
    d.vmm = std::make_unique<AtomicBitmap>(s->ram.size() / GuestMemory::kDirtyPageBytes);
    d.since_base = DirtyBitmap(s->ram.size() / GuestMemory::kDirtyPageBytes);
    s->dirty = std::move(d);
    slot_flags = KVM_MEM_LOG_DIRTY_PAGES;
  }
  SNAPVM_CHECK_OK(s->vm->set_user_memory_region(0, arch::kRamBase, s->ram.span(), slot_flags));
  s->platform.emplace(SNAPVM_TRY(arch::Platform::create(*s->vm, c.vcpus)));
  for (uint32_t i = 0; i < c.vcpus; ++i) s->vcpus.push_back(SNAPVM_TRY(s->vm->create_vcpu(i)));
  for (const auto& v : s->vcpus) SNAPVM_CHECK_OK(s->platform->init_vcpu(*s->vm, v));
  SNAPVM_CHECK_OK(s->platform->finalize());

  State* raw = s.get();
  s->uart = std::make_unique<Pl011>(
      [raw](std::string_view out) {
        if (raw->config.console) raw->config.console(out);
      },
      [raw](bool level) { (void)raw->vm->irq_line(arch::Platform::spi_line(arch::kUartSpi), level); });
  SNAPVM_CHECK_OK(s->bus.add(arch::kUartBase, arch::kUartSize, s->uart.get()));
  if (c.rng) SNAPVM_CHECK_OK(s->add_virtio(std::make_unique<virtio::Rng>()));
  for (const auto& d : c.disks) {
    SNAPVM_CHECK_OK(s->add_virtio(SNAPVM_TRY(virtio::Block::open(d.path, d.read_only)), d.path));
  }
  if (!c.vsock_path.empty()) {
    auto vsock = SNAPVM_TRY(virtio::Vsock::create(c.guest_cid, c.vsock_path, c.publish));
    s->vsock = vsock.get();
    SNAPVM_CHECK_OK(s->add_virtio(std::move(vsock), c.vsock_path));
  } else if (!c.publish.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "--publish needs a vsock device (--vsock PATH or --name NAME)");
  }
  return s;
}

Result<std::unique_ptr<Machine>> Machine::create(const MachineConfig& c) {
  // Inputs first, so a typo costs nothing and says exactly what is wrong.
  if (c.vcpus == 0) return make_error(ErrorCode::kInvalidArgument, "at least one vCPU is needed");
  if (c.mem_bytes % (2ull << 20) != 0 || c.mem_bytes == 0 || c.mem_bytes > arch::kMaxRamBytes) {
    return make_error(ErrorCode::kInvalidArgument, "memory size {} is not a positive multiple of 2 MiB up to {} GiB",
                      c.mem_bytes, arch::kMaxRamBytes >> 30);
  }
  arch::BootImages images;
  images.kernel = SNAPVM_TRY(arch::read_kernel_image(c.kernel_path));
  if (!c.initrd_path.empty()) images.initrd = SNAPVM_TRY(read_whole(c.initrd_path, "initrd", 1ull << 30));
  images.cmdline = c.cmdline;
  SNAPVM_TRY(arch::plan_boot(arch::kRamBase, c.mem_bytes, images.kernel, images.initrd.size()));
  auto s = SNAPVM_TRY(build(c, SNAPVM_TRY(MappedRegion::anonymous_huge(c.mem_bytes))));
  SNAPVM_CHECK_OK(s->platform->boot(s->ram.span(), images, s->vcpus, s->virtio_nodes));
  return std::unique_ptr<Machine>(new Machine(std::move(s)));
}

Result<std::unique_ptr<Machine>> Machine::restore(const std::string& path, const RestoreOptions& o,
                                                  RestoreTimings* timings) {
  using Clock = std::chrono::steady_clock;
  auto us = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::micro>(b - a).count();
  };
  auto t0 = Clock::now();
  auto file = SNAPVM_TRY(SnapshotFile::open(path));
  auto st_r = state::load_state(file);
  if (!st_r) return tl::unexpected(std::move(st_r.error()).context(path));
  state::SnapshotState st = std::move(*st_r);
  if (st.arch != arch::kSnapshotArch) {
    return make_error(ErrorCode::kUnsupported, "{} is a {} snapshot; this VMM runs {} guests", path,
                      format::arch_name(st.arch), format::arch_name(arch::kSnapshotArch));
  }
  if (file.ram_regions().size() != 1 || !st.gic) {
    return make_error(ErrorCode::kUnsupported, "{}: this machine restores one RAM region and a GICv3", path);
  }
  MachineConfig c;
  c.vcpus = st.machine.vcpu_count;
  c.mem_bytes = file.ram_regions()[0].size;
  c.cmdline = st.machine.kernel_cmdline;
  c.console = o.console;
  c.rng = false;
  std::string allowed = SNAPVM_TRY(o.allowed_dir.empty() ? directory_of(path) : resolve_within(o.allowed_dir, "/"));
  // A path the snapshot recorded, accepted only inside `allowed`.
  auto recorded = [&](const std::string& stored, const std::string& what, const char* flag) -> Result<std::string> {
    auto inside = resolve_within(stored, allowed);
    if (!inside) {
      return make_error(ErrorCode::kFailedPrecondition, "{}: the snapshot's {} {} is not inside {}: give {}", path,
                        what, stored, allowed, flag);
    }
    return *inside;
  };
  for (size_t slot = 0; slot < st.machine.devices.size(); ++slot) {
    const auto& d = st.machine.devices[slot];
    if (d.kind != state::DeviceKind::kVirtioMmio) continue;
    if (d.virtio_type == 4) c.rng = true;
    if (d.virtio_type == 2) {
      size_t index = c.disks.size();
      // Read-only stays read-only: the guest negotiated VIRTIO_BLK_F_RO.
      bool read_only = false;
      for (const auto& saved : st.devices) {
        if (saved.slot == slot && saved.transport) read_only = (saved.transport->device_features >> 5) & 1;
      }
      std::string disk = index < o.disks.size()
                             ? o.disks[index]
                             : SNAPVM_TRY(recorded(d.backend, fmt::format("disk {}", index), "--disk PATH"));
      c.disks.push_back({disk, read_only});
    }
    if (d.virtio_type == 19) {
      c.vsock_path = !o.vsock_path.empty() ? o.vsock_path
                                           : SNAPVM_TRY(recorded(d.backend, "vsock socket", "--vsock PATH or --name"));
    }
  }
  for (const auto& d : st.devices) {
    if (d.transport && d.transport->device_id == 19 && d.device_specific.size() >= 8) {
      std::memcpy(&c.guest_cid, d.device_specific.data(), 8);
    }
  }
  c.publish = o.publish;
  c.track_dirty = o.track_dirty;
  auto t1 = Clock::now();
  auto ram = file.map_ram_cow(0);
  if (!ram) return tl::unexpected(std::move(ram.error()));
  auto t2 = Clock::now();
  auto s = SNAPVM_TRY(build(c, std::move(*ram)));
  // A fault on the file mapping (truncated file, full filesystem) now ends
  // the VMM with one line naming the file instead of a crash.
  install_memory_fault_handler();
  register_guest_memory(s->ram.data(), s->ram.size(), path.c_str());
  s->ram_registered = true;
  if (s->dirty) {
    // RAM is the file's until the guest writes: diffs count from it.
    s->dirty->base_path = path;
    s->dirty->base_checksum = file.header().metadata_checksum;
  }
  // Identity: a 6.1 snapshot loads only on the CPU model it was taken on.
  if (!st.host.cpu_regs.empty()) {
    const state::IdentityReg& midr = st.host.cpu_regs.front();  // MIDR_EL1 comes first
    uint8_t buf[8] = {};
    if (s->vcpus.front().get_reg(midr.id, {buf, 8})) {
      uint64_t here;
      std::memcpy(&here, buf, 8);
      if (here != midr.value) {
        return make_error(ErrorCode::kFailedPrecondition,
                          "{} was taken on another CPU model ({}, this host has MIDR {:#x}); it cannot be restored here",
                          path, st.host.cpu_model, here);
      }
    }
  }
  for (size_t i = 0; i < st.vcpus.size(); ++i) {
    if (st.vcpus[i].index >= s->vcpus.size()) return make_error(ErrorCode::kDataLoss, "vCPU index out of range");
    SNAPVM_CHECK_OK(arch::restore_vcpu(s->vcpus[st.vcpus[i].index], st.vcpus[i]));
  }
  auto t3 = Clock::now();
  SNAPVM_CHECK_OK(arch::restore_gic(s->platform->gic(), *st.gic));
  auto t4 = Clock::now();
  for (const auto& d : st.devices) {
    if (!d.transport && d.slot == 0) {
      SNAPVM_CHECK_OK(s->uart->restore(d.device_specific));
      continue;
    }
    if (!d.transport || d.slot == 0 || d.slot > s->virtio.size()) continue;
    auto& t = *s->virtio[d.slot - 1];
    uint32_t here = t.device().device_id();
    if (here != d.transport->device_id) {
      return make_error(ErrorCode::kDataLoss, "device slot {} holds virtio type {}, the snapshot says {}", d.slot, here,
                        d.transport->device_id);
    }
    SNAPVM_CHECK_OK(t.restore(*d.transport));
  }
  auto t5 = Clock::now();
  if (timings != nullptr) {
    timings->open_us = us(t0, t1);
    timings->map_ram_us = us(t1, t2);
    timings->vcpus_us = us(t2, t3);
    timings->gic_us = us(t3, t4);
    timings->devices_us = us(t4, t5);
    timings->total_us = us(t0, t5);
  }
  return std::unique_ptr<Machine>(new Machine(std::move(s)));
}

Result<ExitReason> Machine::run(const std::function<void()>& on_started) {
  install_kick_handler();
  {
    std::lock_guard lock(s_->mu);
    for (size_t i = 0; i < s_->vcpus.size(); ++i) {
      pthread_t t;
      auto* arg = new std::pair<State*, size_t>(s_.get(), i);
      int rc = ::pthread_create(
          &t, nullptr,
          [](void* p) -> void* {
            auto* a = static_cast<std::pair<State*, size_t>*>(p);
            sandbox::enter_or_die(sandbox::ThreadKind::kVcpu);
            a->first->vcpu_loop(a->second);
            {
              std::lock_guard lock(a->first->mu);
              a->first->exited[a->second] = true;
            }
            delete a;
            return nullptr;
          },
          arg);
      if (rc != 0) {
        delete arg;
        s_->error = Error(ErrorCode::kIo, "create vCPU thread", rc);
        break;
      }
      s_->threads.push_back(t);
      s_->exited.push_back(false);
    }
  }
  if (s_->error) s_->stop_all();
  if (on_started) on_started();
  {
    std::unique_lock lock(s_->mu);
    s_->cv.wait(lock, [&] { return s_->exit.has_value() || s_->error.has_value() || s_->stopping.load(); });
  }
  s_->stop_all();
  for (pthread_t t : s_->threads) ::pthread_join(t, nullptr);  // each marked exited before it ends
  {
    std::lock_guard lock(s_->mu);
    s_->threads.clear();
    s_->exited.clear();
  }
  if (s_->error) return tl::unexpected(*s_->error);
  return s_->exit.value_or(ExitReason::kStopped);
}

Status Machine::pause(std::chrono::milliseconds timeout) {
  std::unique_lock lock(s_->mu);
  if (s_->threads.empty()) return make_error(ErrorCode::kFailedPrecondition, "the VM is not running");
  if (s_->pausing) return {};
  s_->pausing = true;
  for (size_t i = 0; i < s_->threads.size(); ++i) {
    s_->vcpus[i].run_data()->immediate_exit = 1;
    ::pthread_kill(s_->threads[i], kick_signal());
  }
  bool all = s_->cv.wait_for(lock, timeout, [&] {
    return s_->parked == s_->threads.size() || s_->stopping.load();
  });
  if (!all) {
    // Roll back rather than leave some vCPUs parked and the rest running:
    // the VM is as it was before the request.
    size_t parked = s_->parked;
    s_->pausing = false;
    lock.unlock();
    s_->cv.notify_all();
    return make_error(ErrorCode::kIo, "pause: only {} of {} vCPUs left KVM_RUN within {} ms; the VM keeps running",
                      parked, s_->threads.size(), timeout.count());
  }
  if (s_->stopping) return make_error(ErrorCode::kFailedPrecondition, "the VM stopped while pausing");
  lock.unlock();
  for (auto& t : s_->virtio) t->device().set_paused(true);
  return {};
}

void Machine::start_paused() {
  s_->pausing = true;
  for (auto& t : s_->virtio) t->device().set_paused(true);
}

Status Machine::resume() {
  for (auto& t : s_->virtio) t->device().set_paused(false);
  {
    std::lock_guard lock(s_->mu);
    s_->pausing = false;
  }
  s_->cv.notify_all();
  return {};
}

bool Machine::paused() const {
  std::lock_guard lock(s_->mu);
  return s_->pausing && s_->parked == s_->threads.size() && !s_->threads.empty();
}

Result<std::vector<state::VcpuState>> Machine::capture_vcpus() const {
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "capture needs a paused VM");
  std::vector<state::VcpuState> out;
  for (const auto& v : s_->vcpus) out.push_back(SNAPVM_TRY(arch::capture_vcpu(v)));
  return out;
}

Status Machine::restore_vcpus(const std::vector<state::VcpuState>& saved) {
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "restore needs a paused VM");
  if (saved.size() != s_->vcpus.size()) {
    return make_error(ErrorCode::kInvalidArgument, "{} saved vCPUs for a VM with {}", saved.size(), s_->vcpus.size());
  }
  for (size_t i = 0; i < saved.size(); ++i) SNAPVM_CHECK_OK(arch::restore_vcpu(s_->vcpus[i], saved[i]));
  return {};
}

Result<state::SnapshotState> Machine::State::capture_state() const {
  const MachineConfig& c = config;
  state::SnapshotState st;
  st.arch = arch::kSnapshotArch;
  st.machine.vcpu_count = static_cast<uint32_t>(vcpus.size());
  st.machine.memory.push_back({arch::kRamBase, ram.size()});
  st.machine.kernel_cmdline = c.cmdline;
  st.machine.devices.push_back({state::DeviceKind::kPl011, 0, arch::kUartBase, arch::kUartSize, arch::kUartSpi, "console", ""});
  for (size_t i = 0; i < virtio.size(); ++i) {
    const auto& node = virtio_nodes[i];
    state::DeviceState saved = virtio[i]->save_device(static_cast<uint32_t>(i + 1));
    st.machine.devices.push_back({state::DeviceKind::kVirtioMmio, saved.transport->device_id, node.base, node.size,
                                  node.spi, fmt::format("virtio{}", i), virtio_backends[i]});
    st.devices.push_back(std::move(saved));
  }
  st.devices.push_back({0, std::nullopt, uart->save()});  // slot 0, no transport: the PL011
  for (const auto& v : vcpus) st.vcpus.push_back(SNAPVM_TRY(arch::capture_vcpu(v)));
  std::vector<uint64_t> mpidrs;
  for (const auto& v : vcpus) mpidrs.push_back(SNAPVM_TRY(arch::vcpu_affinity(v)));
  st.gic = SNAPVM_TRY(arch::capture_gic(platform->gic(), mpidrs));
  st.port_forwards = vsock != nullptr ? vsock->forwards() : std::vector<state::PortForward>{};
  st.clock = arch::clock_of(st.vcpus.front());
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  st.clock.host_realtime_ns = int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  st.clock.host_monotonic_ns = int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
  st.host = arch::host_identity_of(st.vcpus.front());
  utsname u{};
  ::uname(&u);
  st.host.kernel_release = u.release;
  st.host.host_page_size = static_cast<uint32_t>(::sysconf(_SC_PAGESIZE));
  st.creator = state::Creator{"snapvm 0.1.0", st.clock.host_realtime_ns};
  return st;
}

Status Machine::State::check_diff_base(const std::string& diff_from) const {
  if (!dirty) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "a diff snapshot needs dirty-page tracking: start the VM with --track-dirty");
  }
  if (dirty->base_path.empty()) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "this VM has no snapshot to diff against yet: take a full snapshot first");
  }
  auto b = SnapshotFile::open(diff_from);
  if (!b) return tl::unexpected(std::move(b.error()).context("diff base"));
  if (b->header().metadata_checksum != dirty->base_checksum) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "{} is not the snapshot this VM's dirty pages count from ({}); diff against that one", diff_from,
                      dirty->base_path);
  }
  return {};
}

Result<WriteStats> Machine::State::write_snapshot(const std::string& path, std::optional<DiffInProgress> diff,
                                                  LiveSnapshot* timing) {
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  auto t0 = Clock::now();
  state::SnapshotState st = SNAPVM_TRY(capture_state());
  auto t1 = Clock::now();
  if (dirty) SNAPVM_CHECK_OK(collect_dirty());
  auto t2 = Clock::now();
  RamSource source{arch::kRamBase, ram.span()};
  WriteStats stats;
  if (diff) {
    stats = SNAPVM_TRY(std::move(*diff).finish(state::to_contents(st), {&source, 1}, {&dirty->since_base, 1}));
  } else {
    stats = SNAPVM_TRY(write_full(path, state::to_contents(st), {&source, 1}));
  }
  if (dirty) {
    // On failure the pages stay counted against the old base; only a
    // written snapshot becomes the new one.
    auto written = SnapshotFile::open(path);
    if (!written) return tl::unexpected(std::move(written.error()).context("reopen the new snapshot"));
    dirty->base_path = path;
    dirty->base_checksum = written->header().metadata_checksum;
    std::fill(dirty->since_base.words().begin(), dirty->since_base.words().end(), 0);
  }
  if (timing != nullptr) {
    timing->capture_ms = ms(t0, t1);
    timing->dirty_log_ms = ms(t1, t2);
    timing->write_ms = ms(t2, Clock::now());
  }
  return stats;
}

Result<WriteStats> Machine::snapshot(const std::string& path, const std::string& diff_from) {
  std::lock_guard one_at_a_time(s_->snapshot_mu);
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "snapshot needs a paused VM");
  std::optional<DiffInProgress> diff;
  if (!diff_from.empty()) {
    SNAPVM_CHECK_OK(s_->check_diff_base(diff_from));
    diff.emplace(SNAPVM_TRY(DiffInProgress::prepare(path, diff_from)));
  }
  return s_->write_snapshot(path, std::move(diff));
}

Result<Machine::LiveSnapshot> Machine::snapshot_live(const std::string& path, const std::string& diff_from,
                                                     bool resume_after) {
  using Clock = std::chrono::steady_clock;
  std::lock_guard one_at_a_time(s_->snapshot_mu);
  auto start = Clock::now();
  std::optional<DiffInProgress> diff;
  if (!diff_from.empty()) {
    SNAPVM_CHECK_OK(s_->check_diff_base(diff_from));
    diff.emplace(SNAPVM_TRY(DiffInProgress::prepare(path, diff_from)));  // the guest still runs
  }
  auto paused_at = Clock::now();
  if (!paused()) SNAPVM_CHECK_OK(pause());
  LiveSnapshot live;
  auto stats = s_->write_snapshot(path, std::move(diff), &live);
  if (resume_after) (void)resume();
  auto end = Clock::now();
  if (!stats) return tl::unexpected(std::move(stats.error()));
  live.stats = *stats;
  live.pause_ms = std::chrono::duration<double, std::milli>(end - paused_at).count();
  live.total_ms = std::chrono::duration<double, std::milli>(end - start).count();
  return live;
}

bool Machine::tracking_dirty() const { return s_->dirty.has_value(); }

std::string Machine::dirty_base() const {
  std::lock_guard lock(s_->snapshot_mu);
  return s_->dirty ? s_->dirty->base_path : std::string();
}

Result<state::GicV3State> Machine::capture_gic() const {
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "capture needs a paused VM");
  std::vector<uint64_t> mpidrs;
  for (const auto& v : s_->vcpus) mpidrs.push_back(SNAPVM_TRY(arch::vcpu_affinity(v)));
  return arch::capture_gic(s_->platform->gic(), mpidrs);
}

Status Machine::restore_gic(const state::GicV3State& saved) {
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "restore needs a paused VM");
  return arch::restore_gic(s_->platform->gic(), saved);
}

void Machine::request_stop() {
  {
    std::lock_guard lock(s_->mu);  // no lost wakeup between run()'s check and wait
    s_->stopping = true;
  }
  s_->cv.notify_all();
  s_->stop_all();
}

}  // namespace snapvm
