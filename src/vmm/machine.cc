#include "vmm/machine.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <thread>

#include "arch/platform.h"
#include "base/file_io.h"
#include "base/memory_faults.h"
#include "base/paths.h"
#include "devices/console_device.h"
#include "devices/mmio_bus.h"
#include "devices/pl061.h"
#include "devices/tap.h"
#include "devices/virtio/block.h"
#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"
#include "kvm/kvm.h"
#include "sandbox/seccomp.h"
#include "snapshot/diff_writer.h"
#include "snapshot/reader.h"
#include "snapshot/raw_memory.h"
#include "state/snapshot_state.h"
#include "vmm/external_memory.h"
#include "vmm/page_server_watchdog.h"

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
  // Devices first, on every path (a restore that fails half way too):
  // their threads write guest memory and mark dirty pages until joined, so
  // RAM and the dirty bitmaps, declared around them, must outlive them.
  ~State() {
    virtio.clear();
    if (ram_registered) {
      for (const auto& r : ram) unregister_guest_memory(r.data());
    }
  }

  MachineConfig config;
  kvm::Kvm kvm;
  std::optional<kvm::Vm> vm;
  // Guest RAM: one host mapping and one KVM slot per region (slot i is
  // region i), all of it reachable through `memory`.
  std::vector<arch::RamRegion> ram_layout;
  std::vector<MappedRegion> ram;
  GuestMemory memory;
  std::unique_ptr<arch::Platform> platform;
  std::vector<kvm::Vcpu> vcpus;
  MmioBus bus;      // guest-physical addresses
  MmioBus pio_bus;  // I/O ports (x86_64); empty on arm64
  std::unique_ptr<ConsoleDevice> console;
  std::optional<arch::PowerButtonSlot> power_button;
  std::unique_ptr<Pl061> power_gpio;  // the button's GPIO, where it is a GPIO line
  std::vector<std::unique_ptr<virtio::MmioTransport>> virtio;
  std::vector<arch::DeviceSlot> virtio_nodes;
  virtio::Vsock* vsock = nullptr;  // owned by its transport
  std::vector<std::string> virtio_backends;  // per virtio slot: image or socket path, for snapshots
  std::vector<std::string> virtio_names;     // per virtio slot: its name in snapshots (empty: "virtio<slot>")

  // Dirty tracking: what KVM logs plus what the VMM marks, gathered at each
  // snapshot into the pages written since `dirty_base`.
  struct DirtyTracking {
    bool manual_protect = false;     // KVM_CLEAR_DIRTY_LOG re-protects, GET does not
    // Per RAM region: pages devices wrote, and pages written since the
    // base (4 KiB each).
    std::vector<std::unique_ptr<AtomicBitmap>> vmm;
    std::vector<DirtyBitmap> since_base;
    std::string base_path;           // empty: no base yet (tracking from boot)
    uint64_t base_checksum = 0;      // the base's metadata checksum: its identity
    // A snapshot was written: pages count from now, against `path` (empty:
    // none a native diff can use).
    void new_base(std::string path, uint64_t checksum) {
      base_path = std::move(path);
      base_checksum = checksum;
      for (auto& since : since_base) std::fill(since.words().begin(), since.words().end(), 0);
    }
  };
  std::optional<DirtyTracking> dirty;
  bool ram_registered = false;  // with the SIGBUS reporter (RAM mapped from a file)
  UniqueFd uffd, uffd_socket;  // RAM served by a page server: kept open while the VM lives
  // Declared after the userfaultfd it watches: it stops before that closes.
  std::unique_ptr<PageServerWatchdog> page_server_watchdog;
  std::mutex snapshot_mu;  // one snapshot at a time

  Status add_virtio(std::unique_ptr<virtio::VirtioDevice> device, std::string backend = {}, std::string name = {});
  std::vector<RamSource> ram_sources() const;
  // Moves KVM's log and the VMM's marks into dirty->since_base and
  // re-protects, so the next interval starts now. Only while paused.
  Status collect_dirty();
  Result<state::SnapshotState> capture_state() const;
  // Refuses a diff base that is not the snapshot dirty pages count from.
  Status check_diff_base(const std::string& diff_from) const;
  // Captures the paused VM and writes it: in full, or finishing `diff`.
  // With `resume_early`, a diff whose pages are few enough is written from a
  // copy after calling it (the guest runs during the write).
  Result<WriteStats> write_snapshot(const std::string& path, std::optional<DiffInProgress> diff,
                                    LiveSnapshot* timing = nullptr, const std::function<void()>& resume_early = {});
  // Whether copying these pages costs little enough memory: at most a
  // quarter of guest RAM and 1 GiB. Past that a diff is as big as a full
  // snapshot, and is written with the guest paused.
  bool small_enough_to_copy(std::span<const DirtyBitmap> pages) const;

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
  std::string exit_detail;  // how the exit came about, when the arch says (a triple fault)
  std::optional<Error> error;

  void stop_all();
  void finish(std::optional<ExitReason> reason, std::optional<Error> err);
  void vcpu_loop(size_t index);
};

Status Machine::State::add_virtio(std::unique_ptr<virtio::VirtioDevice> device, std::string backend,
                                  std::string name) {
  uint32_t slot = static_cast<uint32_t>(virtio.size());
  if (slot >= arch::virtio_slot_count()) {
    return make_error(ErrorCode::kInvalidArgument, "more than {} virtio devices", arch::virtio_slot_count());
  }
  arch::DeviceSlot node = arch::virtio_slot(slot);
  const arch::Platform* p = platform.get();
  // Edge-triggered: a rising edge per notification.
  auto irq = [p, line = node.irq] {
    p->set_irq(line, true);
    p->set_irq(line, false);
  };
  // Queues whose device has a thread of its own are notified through
  // KVM, without an exit to this process (the vCPU goes on at once).
  for (size_t q = 0; q < device->queue_max_sizes().size(); ++q) {
    if (int fd = device->queue_notify_fd(q); fd >= 0) {
      SNAPVM_CHECK_OK(vm->add_mmio_eventfd(node.base + virtio::MmioTransport::kQueueNotifyOffset, 4, q, fd));
    }
  }
  virtio.push_back(std::make_unique<virtio::MmioTransport>(std::move(device), memory, irq));
  SNAPVM_CHECK_OK(bus.add(node.base, node.size, virtio.back().get()));
  virtio_nodes.push_back(node);
  virtio_backends.push_back(std::move(backend));
  virtio_names.push_back(std::move(name));
  return {};
}

std::vector<RamSource> Machine::State::ram_sources() const {
  std::vector<RamSource> out;
  for (size_t i = 0; i < ram.size(); ++i) out.push_back({ram_layout[i].gpa, ram[i].span()});
  return out;
}

Status Machine::State::collect_dirty() {
  const uint64_t host_page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  for (uint32_t slot = 0; slot < ram.size(); ++slot) {
    const uint64_t kvm_pages = ram[slot].size() / host_page;
    std::vector<uint64_t> log((kvm_pages + 63) / 64, 0);
    SNAPVM_CHECK_OK(vm->get_dirty_log(slot, log));
    if (dirty->manual_protect) SNAPVM_CHECK_OK(vm->clear_dirty_log(slot, log, kvm_pages));
    DirtyBitmap& since = dirty->since_base[slot];
    auto& words = since.words();
    if (host_page == GuestMemory::kDirtyPageBytes) {
      for (size_t i = 0; i < log.size() && i < words.size(); ++i) words[i] |= log[i];
    } else {  // a larger host page covers several 4 KiB pages
      const uint64_t per = host_page / GuestMemory::kDirtyPageBytes;
      for (uint64_t p = 0; p < kvm_pages; ++p) {
        if ((log[p / 64] >> (p % 64)) & 1) {
          for (uint64_t q = p * per; q < (p + 1) * per; ++q) since.set(q);
        }
      }
    }
    dirty->vmm[slot]->drain_into(words);
  }
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
  bool io_pending = false;
  while (!stopping.load()) {
    if (pausing.load()) {
      if (io_pending) {
        // KVM completes an MMIO or port access (loads a read's value, steps past the
        // instruction) only on the next KVM_RUN. Do that now, with
        // immediate_exit so no guest instruction runs, or the registers a
        // snapshot captures would be half-way through an instruction.
        run->immediate_exit = 1;
        auto r = vcpu.run();
        if (!r) {
          finish(std::nullopt, std::move(r.error()));
          return;
        }
        io_pending = false;
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
    io_pending = false;
    if (!*r) {
      // Kicked. A pause that was rolled back (it timed out) left
      // immediate_exit set; clear it unless a pause or stop wants it now.
      // Under mu, so a pause that sets it concurrently is not undone.
      std::lock_guard lock(mu);
      if (!pausing.load() && !stopping.load()) run->immediate_exit = 0;
      continue;
    }
    arch::Exit e = arch::decode_exit(*run, static_cast<uint32_t>(index));
    switch (e.kind) {
      case arch::Exit::Kind::kMmio:
        io_pending = true;
        if (e.write) {
          bus.write(e.addr, e.data);
        } else {
          bus.read(e.addr, e.data);
        }
        break;
      case arch::Exit::Kind::kPortIo:
        io_pending = true;
        // A string instruction (rep outsb) moves `count` items in one exit.
        for (size_t off = 0; off + e.size <= e.data.size(); off += e.size) {
          if (e.write) {
            pio_bus.write(e.addr, e.data.subspan(off, e.size));
          } else if (!pio_bus.read(e.addr, e.data.subspan(off, e.size))) {
            std::memset(e.data.data() + off, 0xff, e.size);  // no device: the bus floats high
          }
        }
        break;
      case arch::Exit::Kind::kPowerOff: finish(ExitReason::kPowerOff, std::nullopt); return;
      case arch::Exit::Kind::kReset:
        if (!e.error.empty()) {
          // Out of KVM_RUN, so its registers are readable: where it died.
          std::string where = platform->describe_vcpu(vcpu);
          std::lock_guard lock(mu);
          if (exit_detail.empty()) exit_detail = e.error + " at " + where;
        }
        finish(ExitReason::kReset, std::nullopt);
        return;
      case arch::Exit::Kind::kCrash: finish(ExitReason::kCrash, std::nullopt); return;
      case arch::Exit::Kind::kIgnore: break;
      case arch::Exit::Kind::kFail:
        finish(std::nullopt, Error(ErrorCode::kIo, e.error));
        return;
    }
  }
}

Machine::Machine(std::unique_ptr<State> state) : s_(std::move(state)) {}

Machine::~Machine() {
  if (!s_) return;
  s_->stop_all();
  for (pthread_t t : s_->threads) ::pthread_join(t, nullptr);
  // ~State stops the devices before anything they write goes.
}

uint64_t Machine::mem_bytes() const {
  uint64_t total = 0;
  for (const auto& r : s_->ram) total += r.size();
  return total;
}
const std::string& Machine::vsock_path() const { return s_->config.vsock_path; }
uint32_t Machine::vcpu_count() const { return static_cast<uint32_t>(s_->vcpus.size()); }
std::vector<state::PortForward> Machine::port_forwards() const {
  return s_->vsock != nullptr ? s_->vsock->forwards() : std::vector<state::PortForward>{};
}

// Everything but guest memory contents: KVM, vCPUs, interrupt controller,
// console, devices.
Result<std::unique_ptr<Machine::State>> Machine::build(const MachineConfig& c, std::vector<MappedRegion> ram) {
  auto s = std::make_unique<State>();
  s->config = c;
  s->kvm = SNAPVM_TRY(kvm::Kvm::open());
  uint32_t max = arch::max_vcpus(s->kvm);
  if (c.vcpus > max) {
    return make_error(ErrorCode::kInvalidArgument, "{} vCPUs requested; this host and machine support at most {}",
                      c.vcpus, max);
  }
  s->vm.emplace(SNAPVM_TRY(s->kvm.create_vm()));
  s->ram_layout = arch::ram_regions(c.mem_bytes);
  if (ram.size() != s->ram_layout.size()) {
    return make_error(ErrorCode::kFailedPrecondition, "{} RAM mappings for {} regions", ram.size(), s->ram_layout.size());
  }
  s->ram = std::move(ram);
  uint32_t slot_flags = 0;
  if (c.track_dirty) {
    if (c.mem_bytes % GuestMemory::kDirtyPageBytes != 0 || ::sysconf(_SC_PAGESIZE) % GuestMemory::kDirtyPageBytes != 0) {
      return make_error(ErrorCode::kUnsupported, "dirty tracking needs RAM and host pages in multiples of 4 KiB");
    }
    State::DirtyTracking d;
    d.manual_protect = SNAPVM_TRY(s->vm->enable_manual_dirty_protect());
    for (const auto& r : s->ram) {
      d.vmm.push_back(std::make_unique<AtomicBitmap>(r.size() / GuestMemory::kDirtyPageBytes));
      d.since_base.emplace_back(r.size() / GuestMemory::kDirtyPageBytes);
    }
    s->dirty = std::move(d);
    slot_flags = KVM_MEM_LOG_DIRTY_PAGES;
  }
  std::vector<GuestMemory::Region> regions;
  for (uint32_t i = 0; i < s->ram.size(); ++i) {
    // Guest RAM has no place in a core dump of the VMM: it is the guest's
    // data, and gigabytes of it.
    ::madvise(s->ram[i].data(), s->ram[i].size(), MADV_DONTDUMP);
    SNAPVM_CHECK_OK(s->vm->set_user_memory_region(i, s->ram_layout[i].gpa, s->ram[i].span(), slot_flags));
    regions.push_back({s->ram_layout[i].gpa, s->ram[i].span(), s->dirty ? s->dirty->vmm[i].get() : nullptr});
  }
  s->memory = GuestMemory(std::move(regions));
  s->platform = SNAPVM_TRY(arch::Platform::create(s->kvm, *s->vm, c.vcpus));
  for (uint32_t i = 0; i < c.vcpus; ++i) s->vcpus.push_back(SNAPVM_TRY(s->vm->create_vcpu(i)));
  for (const auto& v : s->vcpus) SNAPVM_CHECK_OK(s->platform->init_vcpu(v));
  SNAPVM_CHECK_OK(s->platform->finalize(s->vcpus));

  State* raw = s.get();
  const arch::ConsoleSlot con = arch::console_slot();
  s->console = arch::make_console(
      [raw](std::string_view out) {
        if (raw->config.console) raw->config.console(out);
      },
      [raw, line = con.slot.irq](bool level) { raw->platform->set_irq(line, level); });
  SNAPVM_CHECK_OK((con.port_io ? s->pio_bus : s->bus).add(con.slot.base, con.slot.size, s->console.get()));
  s->power_button = arch::power_button_slot();
  if (s->power_button && s->power_button->gpio_line) {
    const arch::DeviceSlot b = s->power_button->slot;
    s->power_gpio = std::make_unique<Pl061>([raw, line = b.irq](bool level) { raw->platform->set_irq(line, level); });
    SNAPVM_CHECK_OK(s->bus.add(b.base, b.size, s->power_gpio.get()));
  }
  SNAPVM_CHECK_OK(s->platform->add_system_devices(s->bus, s->pio_bus, [raw](arch::Exit::Kind request) {
    raw->finish(request == arch::Exit::Kind::kPowerOff ? ExitReason::kPowerOff : ExitReason::kReset, std::nullopt);
  }));
  if (c.rng) SNAPVM_CHECK_OK(s->add_virtio(std::make_unique<virtio::Rng>()));
  for (const auto& d : c.disks) {
    SNAPVM_CHECK_OK(s->add_virtio(SNAPVM_TRY(virtio::Block::open(d.path, d.read_only)), d.path, d.id));
  }
  if (!c.vsock_path.empty()) {
    auto vsock = SNAPVM_TRY(virtio::Vsock::create(c.guest_cid, c.vsock_path, c.publish));
    s->vsock = vsock.get();
    SNAPVM_CHECK_OK(s->add_virtio(std::move(vsock), c.vsock_path));
  } else if (!c.publish.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "--publish needs a vsock device (--vsock PATH or --name NAME)");
  }
  for (const auto& n : c.nets) {
    UniqueFd tap = SNAPVM_TRY(open_tap(n.tap));
    const int fd = tap.get();  // owned by the device from here on
    auto device = SNAPVM_TRY(virtio::Net::create(std::move(tap), n.mac.value_or(virtio::random_mac()),
                                                 [fd](uint64_t features) { return set_tap_offloads(fd, features); }));
    SNAPVM_CHECK_OK(s->add_virtio(std::move(device), n.tap, n.id));
  }
  return s;
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
  auto s = SNAPVM_TRY(build(c, std::move(ram)));
  SNAPVM_CHECK_OK(s->platform->boot(s->memory, images, s->vcpus, s->virtio_nodes));
  return std::unique_ptr<Machine>(new Machine(std::move(s)));
}

// The saved devices against the machine built from the same state: each in
// a slot the machine has, of the type there. Needs no guest RAM, so it runs
// before a page server hears of the restore.
Status Machine::check_saved_devices(const State& s, const state::SnapshotState& st) {
  for (const auto& d : st.devices) {
    if (d.slot >= st.machine.devices.size()) {
      return make_error(ErrorCode::kDataLoss, "saved device slot {} is not in the machine's {} slots", d.slot,
                        st.machine.devices.size());
    }
    if (!d.transport && d.slot != 0 && st.machine.devices[d.slot].kind == state::DeviceKind::kPl061 && !s.power_gpio) {
      return make_error(ErrorCode::kDataLoss, "the snapshot has a power button this machine lacks");
    }
    if (!d.transport || d.slot == 0 || d.slot > s.virtio.size()) continue;
    const uint32_t here = s.virtio[d.slot - 1]->device().device_id();
    if (here != d.transport->device_id) {
      return make_error(ErrorCode::kDataLoss, "device slot {} holds virtio type {}, the snapshot says {}", d.slot, here,
                        d.transport->device_id);
    }
  }
  return {};
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
  std::vector<std::pair<uint64_t, uint64_t>> saved_regions;  // gpa, size
  if (external) {
    for (const auto& r : st.external_ram->regions) saved_regions.emplace_back(r.gpa, r.size);
  } else {
    for (const auto& r : file.ram_regions()) saved_regions.emplace_back(r.gpa, r.size);
  }
  uint64_t mem_bytes = 0;
  for (const auto& r : saved_regions) mem_bytes += r.second;
  // The regions must be exactly the ones this machine lays out for that
  // size: KVM slots and device addresses depend on it.
  auto layout = arch::ram_regions(mem_bytes);
  bool same_layout = arch::check_ram_size(mem_bytes).has_value() && layout.size() == saved_regions.size();
  for (size_t i = 0; same_layout && i < layout.size(); ++i) {
    same_layout = layout[i].gpa == saved_regions[i].first && layout[i].size == saved_regions[i].second;
  }
  if (!same_layout) {
    return make_error(ErrorCode::kUnsupported, "{}: its RAM regions are not the ones this {} machine lays out for {} MiB",
                      path, arch::name(), mem_bytes >> 20);
  }
  MachineConfig c;
  c.vcpus = st.machine.vcpu_count;
  c.mem_bytes = mem_bytes;
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
      c.disks.push_back({disk, read_only, d.name});
    }
    if (d.virtio_type == 1) {
      const size_t index = c.nets.size();
      MachineConfig::Net net = index < o.nets.size() ? o.nets[index] : MachineConfig::Net{};
      net.id = d.name;
      for (const auto& [id, tap] : o.taps_by_id) {
        if (id == d.name) net.tap = tap;
      }
      if (net.tap.empty()) {
        if (!o.recorded_taps) {
          return make_error(ErrorCode::kFailedPrecondition,
                            "{}: the snapshot's network interface {} was on tap {}: give --net tap=NAME", path, index,
                            d.backend);
        }
        net.tap = d.backend;
      }
      if (!net.mac) {
        for (const auto& saved : st.devices) {
          if (saved.slot == slot) net.mac = SNAPVM_TRY(virtio::Net::mac_of_saved(saved.device_specific));
        }
      }
      c.nets.push_back(std::move(net));
    }
    if (d.virtio_type == 19) {
      c.vsock_path = !o.vsock_path.empty() ? o.vsock_path
                                           : SNAPVM_TRY(recorded(d.backend, "vsock socket", "--vsock PATH or --name"));
    }
  }
  if (o.nets.size() > c.nets.size()) {
    return make_error(ErrorCode::kInvalidArgument, "{}: {} --net given, the snapshot has {} network interface(s)", path,
                      o.nets.size(), c.nets.size());
  }
  for (const auto& d : st.devices) {
    if (d.transport && d.transport->device_id == 19 && d.device_specific.size() >= 8) {
      std::memcpy(&c.guest_cid, d.device_specific.data(), 8);
    }
  }
  c.publish = o.publish;
  c.track_dirty = o.track_dirty;
  auto t1 = Clock::now();
  std::vector<MappedRegion> ram;
  ExternalMemory served;
  if (!external) {
    for (size_t i = 0; i < layout.size(); ++i) {
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
  auto s = SNAPVM_TRY(build(c, std::move(ram)));
  s->uffd = std::move(served.uffd);
  // A fault on the file mapping (truncated file, full filesystem) now ends
  // the VMM with one line naming the file instead of a crash.
  install_memory_fault_handler();
  // (Page-server RAM is anonymous: nothing to report.)
  if (!s->uffd.valid()) {
    for (const auto& r : s->ram) register_guest_memory(r.data(), r.size(), path.c_str());
    s->ram_registered = true;
  }
  if (s->dirty && !external) {
    // RAM is the file's until the guest writes: diffs count from it.
    s->dirty->base_path = path;
    s->dirty->base_checksum = file.header().metadata_checksum;
  }
  {
    auto identity = s->platform->check_host(st, s->vcpus.front());
    if (!identity) return tl::unexpected(std::move(identity.error()).context(path));
  }
  SNAPVM_CHECK_OK(check_saved_devices(*s, st));
  if (s->uffd.valid()) {
    // Everything that can be checked without guest RAM has been: now the
    // page server gets the userfaultfd, which is as powerful as ptrace over
    // this process (external_memory.h). It must come before the restore
    // below: loading the vCPUs can fault guest pages in (KVM maps x86's
    // kvmclock page when its MSR is set), and a fault taken here before the
    // handshake would wait for good.
    s->uffd_socket = SNAPVM_TRY(hand_to_page_server(o.memory->path, s->uffd.get(), served.handshake));
    if (o.memory->fault_timeout.count() > 0) {
      std::vector<std::span<uint8_t>> ram;
      for (auto& r : s->ram) ram.emplace_back(r.data(), r.size());
      s->page_server_watchdog = std::make_unique<PageServerWatchdog>(
          s->uffd.get(), o.memory->path, o.memory->fault_timeout, PageServerWatchdog::end_the_vmm,
          PageServerWatchdog::pages_present(std::move(ram)));
    }
  }
  arch::RestoreSplit split;
  SNAPVM_CHECK_OK(s->platform->restore(s->vcpus, st, &split));
  auto t4 = Clock::now();
  for (const auto& d : st.devices) {
    if (!d.transport && d.slot == 0) {
      SNAPVM_CHECK_OK(s->console->restore(d.device_specific));
      continue;
    }
    if (!d.transport && st.machine.devices[d.slot].kind == state::DeviceKind::kPl061) {
      SNAPVM_CHECK_OK(s->power_gpio->restore(d.device_specific));  // there: check_saved_devices
      continue;
    }
    if (!d.transport || d.slot == 0 || d.slot > s->virtio.size()) continue;
    SNAPVM_CHECK_OK(s->virtio[d.slot - 1]->restore(*d.transport));
  }
  auto t5 = Clock::now();
  if (timings != nullptr) {
    timings->open_us = us(t0, t1);
    timings->map_ram_us = us(t1, t2);
    timings->vcpus_us = us(t2, t4) - split.arch_vm_us;
    timings->arch_vm_us = split.arch_vm_us;
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

std::string Machine::exit_detail() const {
  std::lock_guard lock(s_->mu);
  return s_->exit_detail;
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
  for (const auto& v : s_->vcpus) out.push_back(SNAPVM_TRY(s_->platform->capture_vcpu(v)));
  return out;
}

Status Machine::restore_vcpus(const std::vector<state::VcpuState>& saved) {
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "restore needs a paused VM");
  if (saved.size() != s_->vcpus.size()) {
    return make_error(ErrorCode::kInvalidArgument, "{} saved vCPUs for a VM with {}", saved.size(), s_->vcpus.size());
  }
  for (size_t i = 0; i < saved.size(); ++i) SNAPVM_CHECK_OK(s_->platform->restore_vcpu(s_->vcpus[i], saved[i]));
  return {};
}

Result<state::SnapshotState> Machine::State::capture_state() const {
  const MachineConfig& c = config;
  state::SnapshotState st;
  st.arch = arch::snapshot_arch();
  st.machine.vcpu_count = static_cast<uint32_t>(vcpus.size());
  for (size_t i = 0; i < ram.size(); ++i) st.machine.memory.push_back({ram_layout[i].gpa, ram[i].size()});
  st.machine.kernel_cmdline = c.cmdline;
  const arch::ConsoleSlot con = arch::console_slot();
  st.machine.devices.push_back({con.kind, 0, con.slot.base, con.slot.size, con.slot.irq, "console", ""});
  for (size_t i = 0; i < virtio.size(); ++i) {
    const auto& node = virtio_nodes[i];
    state::DeviceState saved = virtio[i]->save_device(static_cast<uint32_t>(i + 1));
    st.machine.devices.push_back({state::DeviceKind::kVirtioMmio, saved.transport->device_id, node.base, node.size,
                                  node.irq, virtio_names[i].empty() ? fmt::format("virtio{}", i) : virtio_names[i],
                                  virtio_backends[i]});
    st.devices.push_back(std::move(saved));
  }
  st.devices.push_back({0, std::nullopt, console->save()});  // slot 0, no transport: the console UART
  if (power_gpio) {
    const arch::DeviceSlot b = power_button->slot;
    st.machine.devices.push_back({state::DeviceKind::kPl061, 0, b.base, b.size, b.irq, "power-button", ""});
    st.devices.push_back({static_cast<uint32_t>(st.machine.devices.size() - 1), std::nullopt, power_gpio->save()});
  }
  for (const auto& v : vcpus) st.vcpus.push_back(SNAPVM_TRY(platform->capture_vcpu(v)));
  st.arch_vm = SNAPVM_TRY(platform->capture_vm(vcpus));
  st.port_forwards = vsock != nullptr ? vsock->forwards() : std::vector<state::PortForward>{};
  st.clock = platform->clock_of(st.vcpus.front());
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  st.clock.host_realtime_ns = int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  st.clock.host_monotonic_ns = int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
  st.host = platform->host_identity_of(st.vcpus.front());
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
                                                  LiveSnapshot* timing, const std::function<void()>& resume_early) {
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  auto t0 = Clock::now();
  state::SnapshotState st = SNAPVM_TRY(capture_state());
  auto t1 = Clock::now();
  if (dirty) SNAPVM_CHECK_OK(collect_dirty());
  auto t2 = Clock::now();
  std::vector<RamSource> sources = ram_sources();
  WriteStats stats;
  if (diff && resume_early && small_enough_to_copy(dirty->since_base)) {
    // Copy the dirty pages, let the guest run, write from the copy: the
    // pause is a memcpy of the changed pages, not their checksummed write.
    // since_base stays as collected while the guest runs: only
    // collect_dirty() adds to it, under snapshot_mu, which this holds; what
    // the guest writes meanwhile waits in KVM's log for the next interval.
    auto copy = SNAPVM_TRY(copy_dirty_pages(sources, dirty->since_base));
    auto t3 = Clock::now();
    resume_early();
    stats = SNAPVM_TRY(std::move(*diff).finish(state::to_contents(st), sources, dirty->since_base, {}, &copy));
    if (timing != nullptr) {
      timing->copy_ms = ms(t2, t3);
      timing->write_ms = ms(t3, Clock::now());
      timing->written_while_running = true;
    }
  } else if (diff) {
    stats = SNAPVM_TRY(std::move(*diff).finish(state::to_contents(st), sources, dirty->since_base));
  } else {
    stats = SNAPVM_TRY(write_full(path, state::to_contents(st), sources));
  }
  if (dirty) {
    // On failure the pages stay counted against the old base; only a
    // written snapshot becomes the new one.
    auto written = SnapshotFile::open(path);
    if (!written) return tl::unexpected(std::move(written.error()).context("reopen the new snapshot"));
    dirty->new_base(path, written->header().metadata_checksum);
  }
  if (timing != nullptr) {
    timing->capture_ms = ms(t0, t1);
    timing->dirty_log_ms = ms(t1, t2);
    if (!timing->written_while_running) timing->write_ms = ms(t2, Clock::now());
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
  std::optional<Clock::time_point> resumed_at;
  std::function<void()> resume_early;
  if (resume_after) {
    resume_early = [&] {
      (void)resume();
      resumed_at = Clock::now();
    };
  }
  auto stats = s_->write_snapshot(path, std::move(diff), &live, resume_early);
  if (resume_after && !resumed_at) (void)resume();
  auto end = Clock::now();
  if (!stats) return tl::unexpected(std::move(stats.error()));
  live.stats = *stats;
  live.pause_ms = std::chrono::duration<double, std::milli>(resumed_at.value_or(end) - paused_at).count();
  live.total_ms = std::chrono::duration<double, std::milli>(end - start).count();
  return live;
}

Result<Machine::TwoFileStats> Machine::snapshot_two_files(const std::string& state_path, const std::string& mem_path,
                                                          bool diff) {
  std::lock_guard one_at_a_time(s_->snapshot_mu);
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "snapshot needs a paused VM");
  if (state_path == mem_path) return make_error(ErrorCode::kInvalidArgument, "the state and memory files must differ");
  if (diff && !s_->dirty) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "a Diff snapshot needs dirty-page tracking (track_dirty_pages, or --track-dirty)");
  }
  state::SnapshotState st = SNAPVM_TRY(s_->capture_state());
  if (s_->dirty) SNAPVM_CHECK_OK(s_->collect_dirty());
  std::vector<std::pair<uint64_t, uint64_t>> regions;
  for (const auto& m : st.machine.memory) regions.emplace_back(m.gpa, m.size);
  st.external_ram = state::external_ram_for(regions);
  std::vector<uint64_t> offsets;
  for (const auto& r : st.external_ram->regions) offsets.push_back(r.file_offset);
  TwoFileStats stats;
  // Memory first: a state file is only ever committed next to the memory it describes.
  std::span<const DirtyBitmap> only;
  if (diff) only = s_->dirty->since_base;
  stats.memory = SNAPVM_TRY(write_raw_memory(mem_path, s_->ram_sources(), offsets, only));
  stats.state = SNAPVM_TRY(write_full(state_path, state::to_contents(st), {}));
  if (s_->dirty) {
    // The next Diff counts from here; a failed write above keeps the pages
    // counted. Native diffs need a base of their own layout again.
    s_->dirty->new_base({}, 0);
  }
  return stats;
}

std::vector<MachineConfig::Disk> Machine::disks() const {
  std::lock_guard lock(s_->snapshot_mu);  // guards virtio_backends
  std::vector<MachineConfig::Disk> out;
  size_t index = 0;
  for (size_t slot = 0; slot < s_->virtio.size(); ++slot) {
    if (s_->virtio[slot]->device().device_id() != 2) continue;
    MachineConfig::Disk d = s_->config.disks.at(index++);
    d.path = s_->virtio_backends[slot];
    out.push_back(std::move(d));
  }
  return out;
}

Status Machine::replace_disk(size_t index, const std::string& path) {
  std::lock_guard one_at_a_time(s_->snapshot_mu);  // also guards virtio_backends
  size_t seen = 0;
  for (size_t slot = 0; slot < s_->virtio.size(); ++slot) {
    auto& device = s_->virtio[slot]->device();
    if (device.device_id() != 2) continue;
    if (seen++ != index) continue;
    SNAPVM_CHECK_OK(static_cast<virtio::Block&>(device).replace_backing(path));
    s_->virtio_backends[slot] = path;
    return {};
  }
  return make_error(ErrorCode::kNotFound, "no disk {} (the VM has {})", index, seen);
}

Status Machine::press_power_button(std::chrono::milliseconds hold) {
  if (!s_->power_button) {
    return make_error(ErrorCode::kUnsupported, "this {} machine has no power button", arch::name());
  }
  if (paused()) return make_error(ErrorCode::kFailedPrecondition, "the VM is paused: resume it first");
  if (!s_->power_gpio) {
    // An event interrupt: the guest's _EVT reports press and release at once.
    s_->platform->set_irq(s_->power_button->slot.irq, true);
    s_->platform->set_irq(s_->power_button->slot.irq, false);
    return {};
  }
  Pl061& gpio = *s_->power_gpio;
  const uint32_t line = *s_->power_button->gpio_line;
  gpio.set_input(line, true);
  // gpio-keys reads the line a debounce interval after the interrupt; a
  // release before that read would lose the press.
  const auto deadline = std::chrono::steady_clock::now() + hold;
  while (!gpio.guest_saw_input(line) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  gpio.set_input(line, false);
  return {};
}

Result<std::vector<std::string>> Machine::describe_vcpus() const {
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "describing vCPUs needs a paused VM");
  std::vector<std::string> out;
  for (size_t i = 0; i < s_->vcpus.size(); ++i) {
    out.push_back(fmt::format("vCPU {}: {}", i, s_->platform->describe_vcpu(s_->vcpus[i])));
  }
  return out;
}

bool Machine::State::small_enough_to_copy(std::span<const DirtyBitmap> pages) const {
  uint64_t dirty_bytes = 0, ram_bytes = 0;
  for (const auto& p : pages) dirty_bytes += p.count() * GuestMemory::kDirtyPageBytes;
  for (const auto& r : ram) ram_bytes += r.size();
  return dirty_bytes <= std::min<uint64_t>(ram_bytes / 4, uint64_t{1} << 30);
}

std::vector<std::string> Machine::describe_devices() const {
  std::vector<std::string> out;
  for (const auto& t : s_->virtio) out.push_back(t->describe());
  return out;
}

bool Machine::tracking_dirty() const { return s_->dirty.has_value(); }

std::string Machine::dirty_base() const {
  std::lock_guard lock(s_->snapshot_mu);
  return s_->dirty ? s_->dirty->base_path : std::string();
}

Result<state::ArchVmState> Machine::capture_arch_vm() const {
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "capture needs a paused VM");
  return s_->platform->capture_vm(s_->vcpus);
}

Status Machine::restore_arch_vm(const state::ArchVmState& saved) {
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "restore needs a paused VM");
  return s_->platform->restore_vm(s_->vcpus, saved);
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
