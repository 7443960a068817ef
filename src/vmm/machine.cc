// The machine as a composer of parts (vmm/machine_parts.h): it builds them
// in the order KVM needs, restores them from a snapshot's plan, and hands
// run, pause and the devices' requests to the part that owns each.
#include "vmm/machine.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/mman.h>

#include <chrono>
#include <cstdlib>

#include "base/file_io.h"
#include "base/memory_faults.h"
#include "devices/virtio/vsock.h"
#include "snapshot/reader.h"
#include "vmm/external_memory.h"
#include "vmm/machine_parts.h"
#include "vmm/restore_plan.h"

namespace snapvm {
namespace {

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

Machine::Parts::~Parts() {
  vcpus.reset();
  devices.reset();
  if (ram_registered) {
    for (const auto& r : ram) unregister_guest_memory(r.data());
  }
}

std::vector<RamSource> Machine::Parts::ram_sources() const {
  std::vector<RamSource> out;
  for (size_t i = 0; i < ram.size(); ++i) out.push_back({ram_layout[i].gpa, ram[i].span()});
  return out;
}

uint64_t Machine::Parts::ram_bytes() const {
  uint64_t total = 0;
  for (const auto& r : ram) total += r.size();
  return total;
}

Machine::Machine(std::unique_ptr<Parts> parts) : p_(std::move(parts)) {}
Machine::~Machine() = default;  // Parts stops the vCPUs, then the devices

uint64_t Machine::mem_bytes() const { return p_->ram_bytes(); }
const std::string& Machine::vsock_path() const { return p_->config.vsock_path; }
uint32_t Machine::vcpu_count() const { return static_cast<uint32_t>(p_->vcpus->size()); }
std::vector<state::PortForward> Machine::port_forwards() const {
  return p_->devices->vsock() != nullptr ? p_->devices->vsock()->forwards() : std::vector<state::PortForward>{};
}

Result<std::unique_ptr<Machine::Parts>> Machine::build(const MachineConfig& c, std::vector<MappedRegion> ram,
                                                       std::span<const VirtioPlacement> placement) {
  auto p = std::make_unique<Parts>();
  p->config = c;
  p->kvm = SNAPVM_TRY(kvm::Kvm::open());
  uint32_t max = arch::max_vcpus(p->kvm);
  if (c.vcpus > max) {
    return make_error(ErrorCode::kInvalidArgument, "{} vCPUs requested; this host and machine support at most {}",
                      c.vcpus, max);
  }
  p->vm.emplace(SNAPVM_TRY(p->kvm.create_vm()));
  p->ram_layout = arch::ram_regions(c.mem_bytes);
  if (ram.size() != p->ram_layout.size()) {
    return make_error(ErrorCode::kFailedPrecondition, "{} RAM mappings for {} regions", ram.size(), p->ram_layout.size());
  }
  p->ram = std::move(ram);
  uint32_t slot_flags = 0;
  if (c.track_dirty) {
    p->dirty.emplace(SNAPVM_TRY(DirtyLog::enable(*p->vm, p->ram)));
    slot_flags = KVM_MEM_LOG_DIRTY_PAGES;
  }
  std::vector<GuestMemory::Region> regions;
  for (uint32_t i = 0; i < p->ram.size(); ++i) {
    // Guest RAM has no place in a core dump of the VMM: it is the guest's
    // data, and gigabytes of it.
    ::madvise(p->ram[i].data(), p->ram[i].size(), MADV_DONTDUMP);
    SNAPVM_CHECK_OK(p->vm->set_user_memory_region(i, p->ram_layout[i].gpa, p->ram[i].span(), slot_flags));
    regions.push_back({p->ram_layout[i].gpa, p->ram[i].span(), p->dirty ? p->dirty->vmm_marks(i) : nullptr});
  }
  p->memory = GuestMemory(std::move(regions));
  p->platform = SNAPVM_TRY(arch::Platform::create(p->kvm, *p->vm, c.vcpus));
  std::vector<kvm::Vcpu> vcpus;
  for (uint32_t i = 0; i < c.vcpus; ++i) vcpus.push_back(SNAPVM_TRY(p->vm->create_vcpu(i)));
  for (const auto& v : vcpus) SNAPVM_CHECK_OK(p->platform->init_vcpu(v));
  SNAPVM_CHECK_OK(p->platform->finalize(vcpus));
  p->devices = std::make_unique<DeviceSet>(*p->vm, p->memory, *p->platform);
  p->vcpus = std::make_unique<VcpuSet>(std::move(vcpus), *p->platform,
                                       [d = p->devices.get()](arch::Exit& e) { d->serve(e); });
  auto console = [watch = p->panic_watch, sink = c.console](std::string_view bytes) {
    watch->feed(bytes);
    if (sink) sink(bytes);
  };
  SNAPVM_CHECK_OK(p->devices->build(c, placement, console, [v = p->vcpus.get()](arch::Exit::Kind request) {
    v->finish(request == arch::Exit::Kind::kPowerOff ? ExitReason::kPowerOff : ExitReason::kReset, std::nullopt);
  }));
  return p;
}

Result<std::unique_ptr<Machine>> Machine::create(const MachineConfig& c) {
  // Inputs first, so a typo costs nothing and says exactly what is wrong.
  if (c.vcpus == 0) return make_error(ErrorCode::kInvalidArgument, "at least one vCPU is needed");
  SNAPVM_CHECK_OK(arch::check_ram_size(c.mem_bytes));
  arch::BootImages images;
  images.kernel = SNAPVM_TRY(read_whole(c.kernel_path, "kernel", 512ull << 20));
  images.kernel_name = c.kernel_path;
  if (!c.initrd_path.empty()) images.initrd = SNAPVM_TRY(read_whole(c.initrd_path, "initrd", 1ull << 30));
  images.cmdline = c.cmdline;
  SNAPVM_CHECK_OK(arch::check_boot(images, c.mem_bytes));
  std::vector<MappedRegion> ram;
  for (const auto& r : arch::ram_regions(c.mem_bytes)) ram.push_back(SNAPVM_TRY(MappedRegion::anonymous_huge(r.size)));
  auto p = SNAPVM_TRY(build(c, std::move(ram), default_placement(c)));
  SNAPVM_CHECK_OK(p->platform->boot(p->memory, images, p->vcpus->vcpus(), p->devices->virtio_slots()));
  return std::unique_ptr<Machine>(new Machine(std::move(p)));
}

Result<std::unique_ptr<Machine>> Machine::restore(const std::string& path, const RestoreOptions& o,
                                                  RestoreTimings* timings) {
  using Clock = std::chrono::steady_clock;
  auto us = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::micro>(b - a).count();
  };
  auto t0 = Clock::now();
  auto file = SNAPVM_TRY(SnapshotFile::open(path));
  // The architecture before anything else: another one's records would
  // only fail later, and less clearly.
  if (file.header().arch != arch::snapshot_arch()) {
    return make_error(ErrorCode::kUnsupported, "{} is a {} snapshot; this VMM runs {} guests", path,
                      format::arch_name(file.header().arch), arch::name());
  }
  auto st_r = state::load_state(file);
  if (!st_r) return tl::unexpected(std::move(st_r.error()).context(path));
  state::SnapshotState st = std::move(*st_r);
  const bool external = st.external_ram.has_value();
  if (external && !o.memory) {
    return make_error(ErrorCode::kInvalidArgument, "{} keeps guest RAM in a separate memory file: give that file", path);
  }
  if (!external && o.memory) {
    return make_error(ErrorCode::kInvalidArgument, "{} holds its own RAM: it takes no memory file", path);
  }
  std::vector<arch::RamRegion> saved_regions;
  if (external) {
    for (const auto& r : st.external_ram->regions) saved_regions.push_back({r.gpa, r.size});
  } else {
    for (const auto& r : file.ram_regions()) saved_regions.push_back({r.gpa, r.size});
  }
  RestorePlan plan = SNAPVM_TRY(plan_restore(st, saved_regions, o, path));
  auto t1 = Clock::now();
  std::vector<MappedRegion> ram;
  ExternalMemory served;
  if (!external) {
    for (size_t i = 0; i < plan.ram.size(); ++i) {
      auto region = file.map_ram_cow(i);
      if (!region) return tl::unexpected(std::move(region.error()));
      // A diagnostic, never a default (it copies all of RAM): every page made
      // private before the guest runs, so that no copy-on-write happens under
      // a running guest. It tells whether a fault needs copy-on-write under
      // the guest (docs/benchmarks.md, "x86_64 in the gate").
      if (std::getenv("SNAPVM_DEBUG_PREFAULT_RAM") != nullptr) {
        constexpr int kMadvPopulateWrite = 23;  // Linux 5.14
        (void)::madvise(region->data(), region->size(), kMadvPopulateWrite);
      }
      ram.push_back(std::move(*region));
    }
  } else {
    // A page server gets its userfaultfd only once the state is checked
    // (below); until then nothing may touch these regions.
    auto mapped = o.memory->backend == RestoreOptions::MemoryFile::Backend::kFile
                      ? map_memory_file(o.memory->path, *st.external_ram)
                      : register_for_page_server(*st.external_ram);
    if (!mapped) return tl::unexpected(std::move(mapped.error()));
    served = std::move(*mapped);
    ram = std::move(served.regions);
  }
  auto t2 = Clock::now();
  auto p = SNAPVM_TRY(build(plan.config, std::move(ram), plan.placement));
  p->uffd = std::move(served.uffd);
  // A fault on the file mapping (truncated file, full filesystem) now ends
  // the VMM with one line naming the file instead of a crash.
  install_memory_fault_handler();
  // (Page-server RAM is anonymous: nothing to report.)
  if (!p->uffd.valid()) {
    for (const auto& r : p->ram) register_guest_memory(r.data(), r.size(), path.c_str());
    p->ram_registered = true;
  }
  if (p->dirty && !external) {
    // RAM is the file's until the guest writes: diffs count from it.
    p->dirty->new_base(path, file.header().metadata_checksum);
  }
  {
    auto identity = p->platform->check_host(st, p->vcpus->vcpus().front());
    if (!identity) return tl::unexpected(std::move(identity.error()).context(path));
  }
  SNAPVM_CHECK_OK(p->devices->check_saved(st));
  if (p->uffd.valid()) {
    // Everything that can be checked without guest RAM has been: now the
    // page server gets the userfaultfd, which is as powerful as ptrace over
    // this process (external_memory.h). It must come before the restore
    // below: loading the vCPUs can fault guest pages in (KVM maps x86's
    // kvmclock page when its MSR is set), and a fault taken here before the
    // handshake would wait for good.
    p->uffd_socket = SNAPVM_TRY(hand_to_page_server(o.memory->path, p->uffd.get(), served.handshake));
    if (o.memory->fault_timeout.count() > 0) {
      std::vector<std::span<uint8_t>> regions;
      for (auto& r : p->ram) regions.emplace_back(r.data(), r.size());
      p->page_server_watchdog = std::make_unique<PageServerWatchdog>(
          p->uffd.get(), o.memory->path, o.memory->fault_timeout, PageServerWatchdog::end_the_vmm,
          PageServerWatchdog::pages_present(std::move(regions)));
    }
  }
  arch::RestoreSplit split;
  SNAPVM_CHECK_OK(p->platform->restore(p->vcpus->vcpus(), st, &split));
  auto t4 = Clock::now();
  SNAPVM_CHECK_OK(p->devices->restore(st));
  auto t5 = Clock::now();
  if (timings != nullptr) {
    timings->open_us = us(t0, t1);
    timings->map_ram_us = us(t1, t2);
    timings->vcpus_us = us(t2, t4) - split.arch_vm_us;
    timings->arch_vm_us = split.arch_vm_us;
    timings->devices_us = us(t4, t5);
    timings->total_us = us(t0, t5);
  }
  return std::unique_ptr<Machine>(new Machine(std::move(p)));
}

Result<ExitReason> Machine::run(const std::function<void()>& on_started) {
  auto exit = p_->vcpus->run(on_started);
  // panic=-1 resets at once: the panic line said what the reset is.
  if (exit && *exit == ExitReason::kReset && p_->panic_watch->panic_line()) return ExitReason::kCrash;
  return exit;
}

std::string Machine::exit_detail() const {
  if (auto line = p_->panic_watch->panic_line()) return "kernel panic: " + *line;
  return p_->vcpus->exit_detail();
}
void Machine::request_stop() { p_->vcpus->request_stop(); }

Status Machine::pause(std::chrono::milliseconds timeout, bool* paused_here) {
  SNAPVM_CHECK_OK(p_->vcpus->pause(timeout, paused_here));
  p_->devices->set_paused(true);
  return {};
}

void Machine::start_paused() {
  p_->vcpus->start_paused();
  p_->devices->set_paused(true);
}

Status Machine::resume() {
  p_->devices->set_paused(false);
  p_->vcpus->resume();
  return {};
}

bool Machine::paused() const { return p_->vcpus->paused(); }

Result<std::vector<state::VcpuState>> Machine::capture_vcpus() const {
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "capture needs a paused VM");
  std::vector<state::VcpuState> out;
  for (const auto& v : p_->vcpus->vcpus()) out.push_back(SNAPVM_TRY(p_->platform->capture_vcpu(v)));
  return out;
}

Status Machine::restore_vcpus(const std::vector<state::VcpuState>& saved) {
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "restore needs a paused VM");
  auto vcpus = p_->vcpus->vcpus();
  if (saved.size() != vcpus.size()) {
    return make_error(ErrorCode::kInvalidArgument, "{} saved vCPUs for a VM with {}", saved.size(), vcpus.size());
  }
  for (size_t i = 0; i < saved.size(); ++i) SNAPVM_CHECK_OK(p_->platform->restore_vcpu(vcpus[i], saved[i]));
  return {};
}

Result<state::ArchVmState> Machine::capture_arch_vm() const {
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "capture needs a paused VM");
  return p_->platform->capture_vm(p_->vcpus->vcpus());
}

Status Machine::restore_arch_vm(const state::ArchVmState& saved) {
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "restore needs a paused VM");
  return p_->platform->restore_vm(p_->vcpus->vcpus(), saved);
}

std::vector<MachineConfig::Disk> Machine::disks() const { return p_->devices->disks(p_->config.disks); }

Status Machine::replace_disk(size_t index, const std::string& path) {
  MutexLock one_at_a_time(p_->snapshot_mu);  // no disk swapped under a snapshot
  return p_->devices->replace_disk(index, path);
}

Status Machine::press_power_button(std::chrono::milliseconds hold) {
  if (!arch::power_button_slot()) {
    return make_error(ErrorCode::kUnsupported, "this {} machine has no power button", arch::name());
  }
  if (paused()) return make_error(ErrorCode::kFailedPrecondition, "the VM is paused: resume it first");
  return p_->platform->press_power_button(hold);
}

Result<std::vector<std::string>> Machine::describe_vcpus() const {
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "describing vCPUs needs a paused VM");
  std::vector<std::string> out;
  auto vcpus = p_->vcpus->vcpus();
  for (size_t i = 0; i < vcpus.size(); ++i) {
    out.push_back(fmt::format("vCPU {}: {}", i, p_->platform->describe_vcpu(vcpus[i])));
  }
  return out;
}

std::vector<std::string> Machine::describe_devices() const { return p_->devices->describe(); }

bool Machine::tracking_dirty() const { return p_->dirty.has_value(); }

std::string Machine::dirty_base() const {
  MutexLock lock(p_->snapshot_mu);
  return p_->dirty ? p_->dirty->base_path() : std::string();
}

}  // namespace snapvm
