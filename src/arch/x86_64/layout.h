// The x86_64 machine's guest physical memory map, I/O ports and interrupts.
//
//   0x0000_0500                 GDT, then an empty IDT at 0x520
//   0x0000_7000                 boot_params (the "zero page")
//   0x0000_9000 - 0x0000_f000   page tables: identity map of the first 4 GiB
//   0x0002_0000                 kernel command line
//   0x0009_fc00 - 0x0010_0000   reserved (not RAM to the guest); ACPI tables at 0xe_0000
//   0x0010_0000 -               kernel (protected-mode part of the bzImage)
//   ... RAM up to 0xd000_0000, the initrd at its top
//   0xd000_0000 - 0xd000_2600   virtio-mmio slots, 512 bytes each        GSI 5 + slot
//   0xfec0_0000                 IOAPIC;  0xfee0_0000  local APICs
//   0x1_0000_0000 -             RAM beyond 3.25 GiB
//
// Interrupts: GSI 3 the ACPI power button's event (GED), 4 COM1, 5-23 virtio.
// I/O ports: 0x3f8 COM1 (8250, IRQ 4); 0x60/0x64 i8042 (reset line only);
// 0x3c0 ACPI sleep control, 0x3c1 sleep status, 0x3c2 reset register.
#pragma once

#include <cstdint>

namespace snapvm::arch::x86 {

inline constexpr uint64_t kGdtAddr = 0x500;
inline constexpr uint64_t kIdtAddr = 0x520;
inline constexpr uint64_t kBootParamsAddr = 0x7000;
inline constexpr uint64_t kPml4Addr = 0x9000;
inline constexpr uint64_t kPdptAddr = 0xa000;
inline constexpr uint64_t kPdAddr = 0xb000;  // four pages
inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;
inline constexpr uint64_t kEbdaStart = 0x9fc00;
inline constexpr uint64_t kAcpiAddr = 0xe0000;
inline constexpr uint64_t kAcpiMax = 0x20000;
inline constexpr uint64_t kKernelAddr = 0x100000;
inline constexpr uint64_t kBootStack = 0x8ff0;

inline constexpr uint64_t kMmioHoleStart = 0xd000'0000;
inline constexpr uint64_t kHighRamStart = 0x1'0000'0000;
inline constexpr uint64_t kMaxRamBytes = 1ull << 40;

inline constexpr uint64_t kVirtioMmioBase = kMmioHoleStart;
inline constexpr uint64_t kVirtioMmioSlotSize = 0x200;
inline constexpr uint32_t kVirtioFirstGsi = 5;
inline constexpr uint32_t kVirtioMmioSlots = 19;  // GSI 5..23: the IOAPIC's pins

inline constexpr uint64_t kIoapicAddr = 0xfec0'0000;
inline constexpr uint64_t kLapicAddr = 0xfee0'0000;

inline constexpr uint16_t kCom1Port = 0x3f8;
inline constexpr uint32_t kCom1Irq = 4;
inline constexpr uint32_t kPowerButtonGsi = 3;  // free: no COM2
inline constexpr uint16_t kI8042DataPort = 0x60;
inline constexpr uint16_t kI8042CommandPort = 0x64;
inline constexpr uint16_t kAcpiSleepControlPort = 0x3c0;
inline constexpr uint16_t kAcpiSleepStatusPort = 0x3c1;
inline constexpr uint16_t kAcpiResetPort = 0x3c2;
inline constexpr uint8_t kAcpiResetValue = 0x1;
inline constexpr uint8_t kAcpiS5SleepType = 5;  // what _S5 says; written as SLP_TYP

// KVM's private pages for the TSS and the real-mode identity map (VMX);
// they sit in the hole under the BIOS area.
inline constexpr uint64_t kKvmTssAddr = 0xfffb'd000;
inline constexpr uint64_t kKvmIdentityMapAddr = 0xfffb'c000;

}  // namespace snapvm::arch::x86
