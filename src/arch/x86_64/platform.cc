// The x86_64 machine: in-kernel PIC, IOAPIC, LAPICs and PIT; an 8250
// console on COM1; virtio-mmio slots announced through ACPI; power off and
// reset through ACPI registers and the i8042; the kernel entered at its
// 64-bit entry point with boot_params (layout in arch/x86_64/layout.h).
#include "arch/platform.h"

#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/boot_params.h"
#include "arch/x86_64/cpuid.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/system_devices.h"
#include "arch/x86_64/vcpu_capture.h"
#include "devices/serial_8250.h"
#include "arch/x86_64/kvm_ioctls.h"
#include "kvm/ioctl.h"
#include "state/x86_64/x86_state.h"

namespace snapvm::arch {
namespace {

using namespace x86;  // NOLINT: this file is the x86 machine
using state::x86::VmRecord;

constexpr uint32_t kMaxX86Vcpus = 254;  // xAPIC ids, 0xff is broadcast

// Boot MSRs (what firmware would leave): fast strings on, MTRRs enabled
// with write-back as the default type, SYSENTER/SYSCALL targets empty.
constexpr uint32_t kMsrMiscEnable = 0x1a0;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;
const std::pair<uint32_t, uint64_t> kBootMsrs[] = {
    {0x174, 0}, {0x175, 0}, {0x176, 0},                     // SYSENTER_CS/ESP/EIP
    {0xc0000081, 0}, {0xc0000082, 0}, {0xc0000083, 0},      // STAR, LSTAR, CSTAR
    {0xc0000084, 0}, {0xc0000102, 0},                       // SFMASK, KERNEL_GS_BASE
    {kMsrTsc, 0}, {kMsrMiscEnable, 1}, {kMsrMtrrDefType, (1u << 11) | 6},
};

int64_t realtime_ns() {
  timespec t{};
  ::clock_gettime(CLOCK_REALTIME, &t);
  return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
}

template <typename T>
std::vector<uint8_t> bytes_of(const T& v) {
  std::vector<uint8_t> b(sizeof v);
  std::memcpy(b.data(), &v, sizeof v);
  return b;
}

kvm_segment segment(uint16_t selector, uint8_t type, bool code64) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.dpl = 0;
  s.db = code64 ? 0 : 1;
  s.s = 1;
  s.l = code64 ? 1 : 0;
  s.g = 1;
  return s;
}

}  // namespace

struct Platform::Impl {
  const kvm::Kvm* kvm = nullptr;
  const kvm::Vm* vm = nullptr;
  uint32_t vcpus = 0;
  CpuidEntries supported;
  bool tsc_deadline = false;
  bool can_scale_tsc = false;
  uint32_t xsave_bytes = state::x86::kXsaveLegacyBytes;
  std::vector<uint32_t> msrs;  // readable, in restore order
  // The I/O-port bus (the console, ACPI and i8042), from add_devices on.
  MmioBus ports;
  std::unique_ptr<AcpiPowerRegisters> acpi;
  std::unique_ptr<I8042> i8042;

  Status boot_vcpu(const kvm::Vcpu& vcpu, uint64_t entry) const;
  // `advance`: move kvmclock on by the wall time since it was saved.
  Status restore_vm_records(const state::x86::VmState& saved, bool advance) const;
};

format::Arch snapshot_arch() { return format::Arch::kX86_64; }
std::string_view name() { return "x86_64"; }
std::string_view default_cmdline() { return "console=ttyS0 quiet panic=-1 reboot=k pci=off"; }
std::string_view console_description() { return "COM1, an 8250 UART"; }
std::string_view kernel_file_example() { return "bzImage"; }
std::string_view kernel_description() { return "kernel: a bzImage or an ELF vmlinux"; }

Status check_ram_size(uint64_t bytes) {
  if (bytes == 0 || bytes % (2ull << 20) != 0 || bytes > kMaxRamBytes) {
    return make_error(ErrorCode::kInvalidArgument, "memory size {} is not a positive multiple of 2 MiB up to {} GiB",
                      bytes, kMaxRamBytes >> 30);
  }
  return {};
}

std::vector<RamRegion> ram_regions(uint64_t bytes) {
  uint64_t low = std::min(bytes, kMmioHoleStart);
  std::vector<RamRegion> r{{0, low}};
  if (bytes > low) r.push_back({kHighRamStart, bytes - low});
  return r;
}

uint32_t max_vcpus(const kvm::Kvm& kvm) { return std::min(kMaxX86Vcpus, kvm_vcpu_limit(kvm)); }

uint32_t virtio_slot_count() { return kVirtioMmioSlots; }

DeviceSlot virtio_slot(uint32_t index) {
  return {kVirtioMmioBase + index * kVirtioMmioSlotSize, kVirtioMmioSlotSize, kVirtioFirstGsi + index};
}

// An ACPI power button (the DSDT's GED, build_acpi): no registers, an
// edge on its GSI. Firecracker's x86_64 answer is Ctrl+Alt+Del on an i8042
// keyboard; a power button reaches the same userspace handlers without a
// keyboard controller.
std::optional<PowerButtonSlot> power_button_slot() { return PowerButtonSlot{{0, 0, kPowerButtonGsi}, std::nullopt}; }

ConsoleSlot console_slot() { return {{kCom1Port, 8, kCom1Irq}, true, state::DeviceKind::kSerial8250}; }

std::unique_ptr<ConsoleDevice> make_console(ConsoleDevice::OutputFn output, ConsoleDevice::IrqFn irq) {
  return std::make_unique<Serial8250>(std::move(output), std::move(irq));
}

namespace {
std::vector<RamRange> ranges_for(uint64_t ram_bytes) {
  std::vector<RamRange> out;
  for (const auto& r : ram_regions(ram_bytes)) out.push_back({r.gpa, r.size});
  return out;
}
}  // namespace

Status check_boot(const BootImages& images, uint64_t ram_bytes) {
  auto k = SNAPVM_TRY(parse_kernel(images.kernel, images.kernel_name));
  auto ranges = ranges_for(ram_bytes);
  SNAPVM_TRY(plan_boot(k, ranges, images.initrd.size(), images.cmdline.size()));
  return {};
}

Exit decode_exit(kvm_run& run, uint32_t vcpu_index) {
  Exit e;
  switch (run.exit_reason) {
    case KVM_EXIT_IO:
      e.kind = Exit::Kind::kPortIo;
      e.addr = run.io.port;
      e.size = run.io.size;
      e.write = run.io.direction == KVM_EXIT_IO_OUT;
      e.data = {reinterpret_cast<uint8_t*>(&run) + run.io.data_offset, size_t{run.io.size} * run.io.count};
      return e;
    case KVM_EXIT_SHUTDOWN:  // a triple fault: what a PC does then is reset
      e.kind = Exit::Kind::kReset;
      e.error = fmt::format("vCPU {} triple-faulted", vcpu_index);
      return e;
    case KVM_EXIT_IRQ_WINDOW_OPEN: return e;
    default: return decode_common_exit(run, vcpu_index);
  }
}

Platform::Platform(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Platform::~Platform() = default;

Result<std::unique_ptr<Platform>> Platform::create(const kvm::Kvm& kvm, const kvm::Vm& vm, uint32_t vcpus) {
  if (kvm.check_extension(KVM_CAP_IRQCHIP) <= 0 || kvm.check_extension(KVM_CAP_PIT2) <= 0) {
    return make_error(ErrorCode::kUnsupported, "this KVM has no in-kernel irqchip and PIT");
  }
  // Both before any vCPU exists: pages KVM keeps for itself under 4 GiB.
  uint64_t identity = kKvmIdentityMapAddr;
  SNAPVM_TRY(kvm::checked_ioctl(vm.fd(), KVM_SET_IDENTITY_MAP_ADDR, &identity, "KVM_SET_IDENTITY_MAP_ADDR"));
  SNAPVM_TRY(kvm::checked_ioctl(vm.fd(), KVM_SET_TSS_ADDR, kKvmTssAddr, "KVM_SET_TSS_ADDR"));
  SNAPVM_TRY(kvm::checked_ioctl(vm.fd(), KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP"));
  kvm_pit_config pit{};
  pit.flags = KVM_PIT_SPEAKER_DUMMY;  // port 0x61 answered in the kernel
  SNAPVM_TRY(kvm::checked_ioctl(vm.fd(), KVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2"));
  auto impl = std::make_unique<Impl>();
  impl->kvm = &kvm;
  impl->vm = &vm;
  impl->vcpus = vcpus;
  impl->supported = SNAPVM_TRY(supported_cpuid(kvm));
  impl->tsc_deadline = kvm.check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
  impl->can_scale_tsc = kvm.check_extension(KVM_CAP_TSC_CONTROL) > 0;
  int xsave2 = vm.check_extension(KVM_CAP_XSAVE2);
  if (xsave2 > static_cast<int>(state::x86::kXsaveLegacyBytes)) impl->xsave_bytes = static_cast<uint32_t>(xsave2);
  return std::unique_ptr<Platform>(new Platform(std::move(impl)));
}

Status Platform::init_vcpu(const kvm::Vcpu& vcpu) {
  SNAPVM_CHECK_OK(set_cpuid(vcpu, vcpu_cpuid(impl_->supported, vcpu.id(), impl_->vcpus, impl_->tsc_deadline)));
  // LINT0 takes the PIC's interrupts (ExtINT), LINT1 is NMI: what the
  // MP/ACPI tables promise and Linux expects of firmware.
  kvm_lapic_state lapic{};
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC"));
  auto set_lvt = [&](size_t off, uint32_t mode) {
    uint32_t v;
    std::memcpy(&v, lapic.regs + off, 4);
    v = (v & ~0x700u) | (mode << 8);
    std::memcpy(lapic.regs + off, &v, 4);
  };
  set_lvt(0x350, 7);  // ExtINT
  set_lvt(0x360, 4);  // NMI
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC"));
  return {};
}

Status Platform::finalize(std::span<const kvm::Vcpu> vcpus) {
  impl_->msrs = SNAPVM_TRY(readable_msrs(*impl_->kvm, vcpus.front()));
  return {};
}

Status Platform::add_devices(MmioBus& /*mmio*/, ConsoleDevice& console, GuestRequestFn request) {
  auto forward = [request](PowerRequest r) {
    request(r == PowerRequest::kPowerOff ? Exit::Kind::kPowerOff : Exit::Kind::kReset);
  };
  MmioBus& ports = impl_->ports;
  const ConsoleSlot con = console_slot();
  SNAPVM_CHECK_OK(ports.add(con.slot.base, con.slot.size, &console));
  impl_->acpi = std::make_unique<AcpiPowerRegisters>(forward);
  impl_->i8042 = std::make_unique<I8042>(forward);
  SNAPVM_CHECK_OK(ports.add(kAcpiSleepControlPort, 3, impl_->acpi.get()));
  SNAPVM_CHECK_OK(ports.add(kI8042DataPort, kI8042CommandPort - kI8042DataPort + 1, impl_->i8042.get()));
  return {};
}

void Platform::port_io(Exit& e) const {
  // A string instruction (rep outsb) moves `count` items in one exit.
  for (size_t off = 0; off + e.size <= e.data.size(); off += e.size) {
    if (e.write) {
      impl_->ports.write(e.addr, e.data.subspan(off, e.size));
    } else if (!impl_->ports.read(e.addr, e.data.subspan(off, e.size))) {
      std::memset(e.data.data() + off, 0xff, e.size);  // no device: the bus floats high
    }
  }
}

// An event interrupt: the guest's _EVT reports press and release at once.
Status Platform::press_power_button(std::chrono::milliseconds /*hold*/) const {
  set_irq(kPowerButtonGsi, true);
  set_irq(kPowerButtonGsi, false);
  return {};
}

// The ACPI registers and the i8042 keep no state a guest could miss.
std::vector<SavedPlatformDevice> Platform::save_devices() const { return {}; }

Status Platform::check_saved_device(const state::DeviceConfig& where) const {
  return make_error(ErrorCode::kDataLoss, "the snapshot has a platform device (kind {}) this x86_64 machine lacks",
                    static_cast<uint32_t>(where.kind));
}

Status Platform::restore_device(const state::DeviceConfig& where, std::span<const uint8_t> /*bytes*/) const {
  return check_saved_device(where);
}

// Long mode straight away: the kernel's 64-bit entry wants paging on, an
// identity map covering itself, boot_params and the command line, flat
// segments, interrupts off and RSI pointing at boot_params.
Status Platform::Impl::boot_vcpu(const kvm::Vcpu& vcpu, uint64_t entry) const {
  kvm_sregs sregs{};
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_GET_SREGS, &sregs, "KVM_GET_SREGS"));
  sregs.cs = segment(kCodeSelector, 0xb, true);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = segment(kDataSelector, 0x3, false);
  sregs.tr = segment(kTssSelector, 0xb, false);
  sregs.tr.s = 0;
  sregs.tr.limit = 0x67;
  sregs.tr.g = 0;
  sregs.tr.db = 0;
  sregs.gdt.base = kGdtAddr;
  sregs.gdt.limit = static_cast<uint16_t>(boot_gdt().size() * 8 - 1);
  sregs.idt.base = kIdtAddr;
  sregs.idt.limit = 0;
  sregs.cr0 = 0x80000011;  // PG, ET, PE
  sregs.cr3 = kPml4Addr;
  sregs.cr4 = 0x20;        // PAE
  sregs.efer = 0x500;      // LME, LMA
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_SET_SREGS, &sregs, "KVM_SET_SREGS"));

  kvm_regs regs{};
  regs.rflags = 0x2;
  regs.rip = entry;  // startup_64: the decompressor's, or an ELF vmlinux's own
  regs.rsi = kBootParamsAddr;
  regs.rsp = regs.rbp = kBootStack;
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_SET_REGS, &regs, "KVM_SET_REGS"));

  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), KVM_SET_FPU, &fpu, "KVM_SET_FPU"));

  std::vector<uint8_t> buf(ioctl::kMsrsHeader + std::size(kBootMsrs) * sizeof(kvm_msr_entry), 0);
  uint32_t count = std::size(kBootMsrs);
  std::memcpy(buf.data(), &count, 4);
  auto* entries = reinterpret_cast<kvm_msr_entry*>(buf.data() + ioctl::kMsrsHeader);
  for (size_t i = 0; i < std::size(kBootMsrs); ++i) {
    entries[i].index = kBootMsrs[i].first;
    entries[i].data = kBootMsrs[i].second;
  }
  int n = SNAPVM_TRY(kvm::checked_ioctl(vcpu.fd(), ioctl::kSetMsrs, buf.data(), "KVM_SET_MSRS"));
  if (n != static_cast<int>(std::size(kBootMsrs))) {
    return make_error(ErrorCode::kIo, "KVM_SET_MSRS: boot MSR {:#x} refused", kBootMsrs[n].first);
  }
  return {};
}

Status Platform::boot(const GuestMemory& ram, const BootImages& images, std::span<const kvm::Vcpu> vcpus,
                      std::span<const DeviceSlot> virtio) const {
  std::vector<RamRange> ranges;
  for (const auto& r : ram.regions()) ranges.push_back({r.gpa, r.host.size()});
  KernelImage kernel = SNAPVM_TRY(parse_kernel(images.kernel, images.kernel_name));
  BootPlan plan = SNAPVM_TRY(plan_boot(kernel, ranges, images.initrd.size(), images.cmdline.size()));
  auto write = [&](uint64_t gpa, const void* p, size_t n, const char* what) -> Status {
    if (!ram.write(gpa, p, n)) return make_error(ErrorCode::kFailedPrecondition, "{} does not fit guest RAM at {:#x}", what, gpa);
    return {};
  };
  for (const auto& segment : kernel.segments) {
    SNAPVM_CHECK_OK(write(segment.gpa, segment.bytes.data(), segment.bytes.size(), "kernel"));
  }
  if (plan.initrd_size != 0) SNAPVM_CHECK_OK(write(plan.initrd_addr, images.initrd.data(), images.initrd.size(), "initrd"));
  std::string cmdline = images.cmdline;
  SNAPVM_CHECK_OK(write(kCmdlineAddr, cmdline.c_str(), cmdline.size() + 1, "command line"));

  AcpiConfig ac;
  ac.base_gpa = kAcpiAddr;
  ac.vcpus = static_cast<uint32_t>(vcpus.size());
  for (const auto& d : virtio) ac.virtio.push_back({d.base, d.size, d.irq});
  ac.power_button_gsi = kPowerButtonGsi;
  AcpiTables acpi = build_acpi(ac);
  if (acpi.bytes.size() > kAcpiMax) return make_error(ErrorCode::kFailedPrecondition, "ACPI tables too large");
  SNAPVM_CHECK_OK(write(kAcpiAddr, acpi.bytes.data(), acpi.bytes.size(), "ACPI tables"));

  auto e820 = e820_map(ranges);
  auto zero_page = boot_params(kernel, plan, kCmdlineAddr, cmdline.size(), e820, acpi.rsdp_gpa);
  SNAPVM_CHECK_OK(write(kBootParamsAddr, zero_page.data(), zero_page.size(), "boot_params"));
  auto gdt = boot_gdt();
  SNAPVM_CHECK_OK(write(kGdtAddr, gdt.data(), gdt.size() * 8, "GDT"));
  uint64_t no_idt = 0;
  SNAPVM_CHECK_OK(write(kIdtAddr, &no_idt, 8, "IDT"));
  auto tables = identity_page_tables(kPml4Addr);
  SNAPVM_CHECK_OK(write(kPml4Addr, tables.data(), tables.size(), "page tables"));
  // The other vCPUs wait in the in-kernel LAPIC for the boot vCPU's
  // INIT-SIPI; only the boot vCPU is set up here.
  return impl_->boot_vcpu(vcpus.front(), kernel.entry);
}

void Platform::set_irq(uint32_t irq, bool level) const { (void)impl_->vm->irq_line(irq, level); }

Result<state::VcpuState> Platform::capture_vcpu(const kvm::Vcpu& vcpu) const {
  return x86::capture_vcpu(vcpu, impl_->msrs, impl_->xsave_bytes);
}

Result<state::ArchVmState> Platform::capture_vm(std::span<const kvm::Vcpu> /*vcpus*/) const {
  const kvm::Vm& vm = *impl_->vm;
  state::x86::VmState s;
  kvm_pit_state2 pit{};
  SNAPVM_TRY(kvm::checked_ioctl(vm.fd(), KVM_GET_PIT2, &pit, "KVM_GET_PIT2"));
  s.records.push_back({VmRecord::kPit, bytes_of(pit)});
  kvm_clock_data clock{};
  SNAPVM_TRY(kvm::checked_ioctl(vm.fd(), KVM_GET_CLOCK, &clock, "KVM_GET_CLOCK"));
  if ((clock.flags & KVM_CLOCK_REALTIME) == 0) {
    // The host clock is not TSC-based, so KVM gave no paired wall time:
    // take it now, as close to the read as this process can.
    clock.realtime = static_cast<uint64_t>(realtime_ns());
    clock.flags |= KVM_CLOCK_REALTIME;
  }
  s.records.push_back({VmRecord::kClock, bytes_of(clock)});
  for (auto [chip, kind] : {std::pair{KVM_IRQCHIP_PIC_MASTER, VmRecord::kPicMaster},
                            std::pair{KVM_IRQCHIP_PIC_SLAVE, VmRecord::kPicSlave},
                            std::pair{KVM_IRQCHIP_IOAPIC, VmRecord::kIoapic}}) {
    kvm_irqchip c{};
    c.chip_id = static_cast<uint32_t>(chip);
    SNAPVM_TRY(kvm::checked_ioctl(vm.fd(), KVM_GET_IRQCHIP, &c, "KVM_GET_IRQCHIP"));
    s.records.push_back({kind, bytes_of(c)});
  }
  return state::ArchVmState{std::move(s)};
}

Status Platform::Impl::restore_vm_records(const state::x86::VmState& saved, bool advance) const {
  auto record = [&](VmRecord k) -> Result<const std::vector<uint8_t>*> {
    const auto* r = saved.find(k);
    if (r == nullptr || r->bytes.size() != state::x86::vm_record_size(k)) {
      return make_error(ErrorCode::kDataLoss, "x86 VM state has no valid {} record", state::x86::vm_record_name(k));
    }
    return &r->bytes;
  };
  kvm_pit_state2 pit{};
  std::memcpy(&pit, SNAPVM_TRY(record(VmRecord::kPit))->data(), sizeof pit);
  SNAPVM_TRY(kvm::checked_ioctl(vm->fd(), KVM_SET_PIT2, &pit, "KVM_SET_PIT2"));
  kvm_clock_data clock{};
  std::memcpy(&clock, SNAPVM_TRY(record(VmRecord::kClock))->data(), sizeof clock);
  // kvmclock runs on from the saved value; with a capture time, KVM moves
  // it on by the wall time that passed since (KVM_CLOCK_REALTIME), so the
  // guest's wall clock is right and its monotonic clock only goes forward.
  kvm_clock_data set{};
  set.clock = clock.clock;
  if (advance) {
    set.flags = KVM_CLOCK_REALTIME;
    set.realtime = clock.realtime;
  }
  SNAPVM_TRY(kvm::checked_ioctl(vm->fd(), KVM_SET_CLOCK, &set, "KVM_SET_CLOCK"));
  for (auto [chip, kind] : {std::pair{KVM_IRQCHIP_PIC_MASTER, VmRecord::kPicMaster},
                            std::pair{KVM_IRQCHIP_PIC_SLAVE, VmRecord::kPicSlave},
                            std::pair{KVM_IRQCHIP_IOAPIC, VmRecord::kIoapic}}) {
    kvm_irqchip c{};
    std::memcpy(&c, SNAPVM_TRY(record(kind))->data(), sizeof c);
    if (c.chip_id != static_cast<uint32_t>(chip)) {
      return make_error(ErrorCode::kDataLoss, "x86 VM state: {} record names chip {}", state::x86::vm_record_name(kind),
                        c.chip_id);
    }
    SNAPVM_TRY(kvm::checked_ioctl(vm->fd(), KVM_SET_IRQCHIP, &c, "KVM_SET_IRQCHIP"));
  }
  return {};
}

Status Platform::check_host(const state::SnapshotState& saved, const kvm::Vcpu& /*probe*/) const {
  if (saved.vcpus.empty()) return make_error(ErrorCode::kDataLoss, "the snapshot has no vCPUs");
  const auto* rec = saved.vcpus.front().find(state::x86::struct_id(state::x86::Struct::kCpuid));
  if (rec == nullptr) return make_error(ErrorCode::kDataLoss, "the snapshot's vCPU 0 has no CPUID record");
  CpuidEntries cpuid = decode_cpuid(rec->value);
  std::string theirs = vendor_of(cpuid), ours = vendor_of(impl_->supported);
  if (theirs != ours) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "the snapshot was taken on a {} CPU and this host has a {} one; it cannot be restored here", theirs,
                      ours);
  }
  // Against what this host gives a VM it boots (KVM's supported CPUID as
  // each vCPU gets it), so a snapshot this host took always passes here.
  const auto given = vcpu_cpuid(impl_->supported, 0, static_cast<uint32_t>(saved.vcpus.size()), impl_->tsc_deadline);
  std::string missing = missing_features(cpuid, given);
  if (!missing.empty()) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "the snapshot's guest uses CPU features a VM booted on this host is not given: {}; it cannot "
                      "be restored here", missing);
  }
  return {};
}

// The VM's PIT, kvmclock, PICs and IOAPIC before any vCPU (vcpu_capture.h
// says why the vCPUs go in their order). The guest's clocks move on by the
// time the snapshot spent on disk: kvmclock through KVM_CLOCK_REALTIME, and
// every vCPU's TSC by the same amount, all to one value so KVM keeps them
// synchronised.
Status Platform::restore(std::span<const kvm::Vcpu> vcpus, const state::SnapshotState& saved,
                         RestoreSplit* split) const {
  using Clock = std::chrono::steady_clock;
  const auto* vm_state = std::get_if<state::x86::VmState>(&saved.arch_vm);
  if (vm_state == nullptr) return make_error(ErrorCode::kDataLoss, "the snapshot holds no x86 VM state");
  auto t0 = Clock::now();
  SNAPVM_CHECK_OK(impl_->restore_vm_records(*vm_state, /*advance=*/true));
  auto t1 = Clock::now();
  std::optional<uint64_t> tsc;
  if (!saved.vcpus.empty() && saved.clock.counter_frequency_hz != 0) {
    int64_t elapsed_ns = std::max<int64_t>(0, realtime_ns() - saved.clock.host_realtime_ns);
    tsc = saved.clock.guest_counter +
          static_cast<uint64_t>(static_cast<__int128>(elapsed_ns) * saved.clock.counter_frequency_hz / 1'000'000'000);
  }
  for (const auto& v : saved.vcpus) {
    if (v.index >= vcpus.size()) return make_error(ErrorCode::kDataLoss, "vCPU index out of range");
    SNAPVM_CHECK_OK(x86::restore_vcpu(vcpus[v.index], v, impl_->can_scale_tsc, /*fresh=*/true, tsc));
  }
  if (split != nullptr) {
    split->arch_vm_us = std::chrono::duration<double, std::micro>(t1 - t0).count();
    split->vcpus_us = std::chrono::duration<double, std::micro>(Clock::now() - t1).count();
  }
  return {};
}

Status Platform::restore_vcpu(const kvm::Vcpu& vcpu, const state::VcpuState& saved) const {
  return x86::restore_vcpu(vcpu, saved, impl_->can_scale_tsc, /*fresh=*/false);
}

Status Platform::restore_vm(std::span<const kvm::Vcpu> /*vcpus*/, const state::ArchVmState& saved) const {
  const auto* s = std::get_if<state::x86::VmState>(&saved);
  if (s == nullptr) return make_error(ErrorCode::kDataLoss, "the snapshot holds no x86 VM state");
  return impl_->restore_vm_records(*s, /*advance=*/false);
}

std::string Platform::describe_vcpu(const kvm::Vcpu& vcpu) const {
  kvm_regs regs{};
  kvm_sregs sregs{};
  kvm_vcpu_events events{};
  if (::ioctl(vcpu.fd(), KVM_GET_REGS, &regs) != 0 || ::ioctl(vcpu.fd(), KVM_GET_SREGS, &sregs) != 0 ||
      ::ioctl(vcpu.fd(), KVM_GET_VCPU_EVENTS, &events) != 0) {
    return "registers unreadable";
  }
  // KVM on AMD INITs a vCPU when it intercepts a shutdown (the VMCB is
  // undefined after one), so after a triple fault there its registers are
  // the reset vector's, not where it faulted; Intel keeps them.
  if (regs.rip == 0xfff0 && sregs.cs.selector == 0xf000) {
    return "an unknown place (KVM had already reset the vCPU's registers, as it does on AMD)";
  }
  return fmt::format(
      "rip={:#x} rsp={:#x} rflags={:#x} cs={:#x} cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} "
      "exception={}{} interrupt={}{}",
      regs.rip, regs.rsp, regs.rflags, sregs.cs.selector, sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.efer,
      events.exception.injected || events.exception.pending ? "" : "none",
      events.exception.injected || events.exception.pending ? fmt::format("#{}", events.exception.nr) : "",
      events.interrupt.injected ? "" : "none", events.interrupt.injected ? fmt::format("{}", events.interrupt.nr) : "");
}

state::ClockState Platform::clock_of(const state::VcpuState& v) const {
  state::ClockState c;
  c.guest_counter = saved_msr(v, kMsrTsc);
  if (const auto* khz = v.find(state::x86::struct_id(state::x86::Struct::kTscKhz))) {
    uint64_t k = 0;
    std::memcpy(&k, khz->value.data(), 8);
    c.counter_frequency_hz = k * 1000;
  }
  return c;
}

state::HostIdentity Platform::host_identity_of(const state::VcpuState& v) const {
  state::HostIdentity h;
  const auto* rec = v.find(state::x86::struct_id(state::x86::Struct::kCpuid));
  if (rec == nullptr) return h;
  CpuidEntries cpuid = decode_cpuid(rec->value);
  if (const auto* l0 = find_leaf(cpuid, 0)) {
    h.cpu_regs.push_back({state::x86::id(state::x86::Kind::kIdentity, 0), l0->ebx | (uint64_t{l0->edx} << 32)});
  }
  uint32_t signature = 0;
  if (const auto* l1 = find_leaf(cpuid, 1)) {
    signature = l1->eax;
    h.cpu_regs.push_back({state::x86::id(state::x86::Kind::kIdentity, 1), l1->eax});
  }
  uint32_t family = (signature >> 8) & 0xf, model = (signature >> 4) & 0xf;
  if (family == 0xf) family += (signature >> 20) & 0xff;
  if (family >= 6) model |= ((signature >> 16) & 0xf) << 4;
  h.cpu_model = fmt::format("{} family {:#x} model {:#x} stepping {}", vendor_of(cpuid), family, model, signature & 0xf);
  return h;
}

}  // namespace snapvm::arch
