// The architecture contract: everything the generic VMM (src/vmm), the
// devices and the command line need from an architecture, and nothing
// more. src/arch/arm64/ and src/arch/x86_64/ each implement all of it; the
// build compiles the one for its target, so generic code holds no
// architecture conditionals (kvmtool's kvm__arch_* hooks and crosvm's
// hypervisor traits draw the same line).
#pragma once

#include <linux/kvm.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "devices/console_device.h"
#include "devices/guest_memory.h"
#include "devices/mmio_bus.h"
#include "kvm/kvm.h"
#include "snapshot/format.h"
#include "state/host_state.h"
#include "state/machine_shape.h"
#include "state/snapshot_state.h"
#include "state/vcpu_state.h"

namespace snapvm::arch {

// --- The machine's shape --------------------------------------------------
format::Arch snapshot_arch();
std::string_view name();  // "arm64", "x86_64"
// What `snapvm run` boots with when no --cmdline is given.
std::string_view default_cmdline();
// For help texts: the console UART, and the kernel file a user boots.
std::string_view console_description();  // "a PL011 UART"
std::string_view kernel_file_example();  // "Image"
std::string_view kernel_description();   // what --kernel takes, for help texts

struct RamRegion {
  uint64_t gpa = 0;
  uint64_t size = 0;
};
// Refuses a RAM size this machine cannot lay out, with the reason.
Status check_ram_size(uint64_t bytes);
// Where `bytes` of RAM go in guest-physical space, in ascending order (x86_64
// leaves a hole below 4 GiB for devices, so there may be several).
std::vector<RamRegion> ram_regions(uint64_t bytes);

uint32_t max_vcpus(const kvm::Kvm& kvm);

// A device's place: its registers and its interrupt line (an SPI on arm64, a
// GSI on x86_64).
struct DeviceSlot {
  uint64_t base = 0;
  uint64_t size = 0;
  uint32_t irq = 0;
};
uint32_t virtio_slot_count();
DeviceSlot virtio_slot(uint32_t index);  // on the MMIO bus

// The console UART: a PL011 on the MMIO bus (arm64), an 8250 on the I/O-port
// bus (x86_64).
struct ConsoleSlot {
  DeviceSlot slot;
  bool port_io = false;
  state::DeviceKind kind = state::DeviceKind::kPl011;
};
ConsoleSlot console_slot();
std::unique_ptr<ConsoleDevice> make_console(ConsoleDevice::OutputFn output, ConsoleDevice::IrqFn irq);

// The power button, as the firmware description wires it to a KEY_POWER
// key. arm64: a line of a PL061 GPIO on the MMIO bus (gpio-keys in the
// device tree). x86_64: an ACPI Generic Event Device's interrupt, whose
// _EVT notifies a PNP0C0C button; no registers.
struct PowerButtonSlot {
  DeviceSlot slot;                    // the PL061's registers and SPI, or (size 0) the GED's GSI
  std::optional<uint32_t> gpio_line;  // the PL061 line, where there is one
};
std::optional<PowerButtonSlot> power_button_slot();

// --- Booting --------------------------------------------------------------
struct BootImages {
  std::vector<uint8_t> kernel;  // as read from the file; the architecture parses it
  std::string kernel_name;      // for error messages
  std::vector<uint8_t> initrd;  // empty: none
  std::string cmdline;
};
// Checks the kernel's format and that RAM can hold kernel, initrd and boot
// data, before anything is built.
Status check_boot(const BootImages& images, uint64_t ram_bytes);

// --- vCPU exits -----------------------------------------------------------
struct Exit {
  enum class Kind {
    kMmio,      // addr, data, write
    kPortIo,    // addr (the port), data (size * count bytes), size, write
    kPowerOff,  // the guest powered off
    kReset,     // the guest asked for a reset (or triple-faulted on x86)
    kCrash,     // the guest reported a crash
    kIgnore,    // nothing to do (an interrupted run, a spurious exit)
    kFail,      // the VMM cannot go on: `error` says why
  };
  Kind kind = Kind::kIgnore;
  uint64_t addr = 0;
  std::span<uint8_t> data;
  uint32_t size = 0;
  bool write = false;
  std::string error;  // kFail: why; kReset: how, where the arch knows (a triple fault)
};
Exit decode_exit(kvm_run& run, uint32_t vcpu_index);
// For implementations: the exits all architectures share (common_exits.cc),
// and the vCPU count KVM allows.
Exit decode_common_exit(kvm_run& run, uint32_t vcpu_index);
uint32_t kvm_vcpu_limit(const kvm::Kvm& kvm);

// --- The per-VM platform ----------------------------------------------------
// What a running guest asks of the machine through platform devices (x86's
// ACPI sleep and reset registers, the i8042 reset line).
using GuestRequestFn = std::function<void(Exit::Kind request)>;

// A platform device's record in a snapshot: where it sits (its entry in the
// machine's device list) and its state.
struct SavedPlatformDevice {
  state::DeviceConfig where;
  std::vector<uint8_t> bytes;
};

struct RestoreSplit {
  double vcpus_us = 0;    // vCPU registers and per-vCPU interrupt state
  double arch_vm_us = 0;  // interrupt controller and timers of the VM
};

class Platform {
 public:
  // Creates the in-kernel interrupt controller and timers; before any vCPU.
  static Result<std::unique_ptr<Platform>> create(const kvm::Kvm& kvm, const kvm::Vm& vm, uint32_t vcpus);
  ~Platform();

  // Per vCPU once created, then once for all of them.
  Status init_vcpu(const kvm::Vcpu& vcpu);
  Status finalize(std::span<const kvm::Vcpu> vcpus);

  // The console UART where this machine has it, and the platform's own
  // devices: arm64's power button (a PL061 GPIO) on the MMIO bus; on
  // x86_64, on an I/O-port bus the platform owns, the console's 8250, the
  // ACPI sleep and reset registers and the i8042 reset line. Once, before
  // any vCPU runs; `console` must outlive the platform's use of it.
  Status add_devices(MmioBus& mmio, ConsoleDevice& console, GuestRequestFn request);
  // Serves a port-I/O exit (x86_64; a string instruction moves several
  // items in one): reads where no device answers float high.
  void port_io(Exit& exit) const;

  // Presses the power button (power_button_slot) and, for a GPIO button,
  // holds it until the guest's driver has read it (at most `hold`,
  // blocking the caller), then releases it. kUnsupported where there is none.
  Status press_power_button(std::chrono::milliseconds hold) const;

  // The platform devices with state of their own, in the order they follow
  // the generic devices in a snapshot.
  std::vector<SavedPlatformDevice> save_devices() const;
  // Refuses a saved platform device this machine does not have at that
  // place (before anything is restored), then loads one.
  Status check_saved_device(const state::DeviceConfig& where) const;
  Status restore_device(const state::DeviceConfig& where, std::span<const uint8_t> bytes) const;

  // Loads kernel, initrd and boot data (device tree, or boot_params, e820
  // and ACPI tables) into RAM and points the boot vCPU at the kernel.
  Status boot(const GuestMemory& ram, const BootImages& images, std::span<const kvm::Vcpu> vcpus,
              std::span<const DeviceSlot> virtio) const;

  // Drives an interrupt line (DeviceSlot::irq numbering).
  void set_irq(uint32_t irq, bool level) const;

  // State. All vCPUs must be out of KVM_RUN.
  Result<state::VcpuState> capture_vcpu(const kvm::Vcpu& vcpu) const;
  Result<state::ArchVmState> capture_vm(std::span<const kvm::Vcpu> vcpus) const;
  // Before restore: refuses state taken on a host this one cannot stand in
  // for (CPU model or vendor, CPU features, TSC frequency), with one line.
  Status check_host(const state::SnapshotState& saved, const kvm::Vcpu& probe) const;
  // vCPUs and VM state, in the order this architecture needs.
  Status restore(std::span<const kvm::Vcpu> vcpus, const state::SnapshotState& saved, RestoreSplit* split) const;
  // Just the vCPU registers (tests, in-process rollback).
  Status restore_vcpu(const kvm::Vcpu& vcpu, const state::VcpuState& saved) const;
  Status restore_vm(std::span<const kvm::Vcpu> vcpus, const state::ArchVmState& saved) const;

  // Where a stopped vCPU is, in one line for a crash report (program
  // counter and the registers that say its mode); never fails, says what
  // it could not read.
  std::string describe_vcpu(const kvm::Vcpu& vcpu) const;

  // From a captured boot vCPU: the guest clock and what must match for the
  // state to load elsewhere.
  state::ClockState clock_of(const state::VcpuState& boot_vcpu) const;
  state::HostIdentity host_identity_of(const state::VcpuState& boot_vcpu) const;

  struct Impl;

 private:
  explicit Platform(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace snapvm::arch
