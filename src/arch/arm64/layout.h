// The arm64 machine's guest physical memory map and interrupt numbers.
//
//   0x0000_0000 - 0x0800_0000   unused
//   0x0800_0000 - 0x0801_0000   GICv3 distributor (64 KiB)
//   0x080A_0000 - 0x0900_0000   GICv3 redistributors, 128 KiB per vCPU (123 vCPUs)
//   0x0900_0000 - 0x0900_1000   PL011 UART (console)                 SPI 1
//   0x0903_0000 - 0x0903_1000   PL061 GPIO, line 3 the power button  SPI 2
//   0x0A00_0000 - 0x0A00_4000   virtio-mmio slots, 512 bytes each    SPI 16 + slot
//   0x4000_0000 - ...           RAM (kernel at its start, DTB and initrd near
//                               min(RAM end, RAM start + 1 GiB))
#pragma once

#include <cstdint>

namespace snapvm::arch {

inline constexpr uint64_t kGicDistBase = 0x0800'0000;
inline constexpr uint64_t kGicDistSize = 0x1'0000;
inline constexpr uint64_t kGicRedistBase = 0x080A'0000;
inline constexpr uint64_t kGicRedistSizePerCpu = 0x2'0000;
inline constexpr uint64_t kGicRedistLimit = 0x0900'0000;
inline constexpr uint32_t kMaxVcpus = (kGicRedistLimit - kGicRedistBase) / kGicRedistSizePerCpu;

inline constexpr uint64_t kUartBase = 0x0900'0000;
inline constexpr uint64_t kUartSize = 0x1000;
inline constexpr uint32_t kUartSpi = 1;

// The power button: a gpio-keys KEY_POWER key on a PL061 line, as QEMU's
// virt machine wires it, which Linux guests (systemd-logind, acpid, snapvm's
// init) turn into a clean shutdown.
inline constexpr uint64_t kGpioBase = 0x0903'0000;
inline constexpr uint64_t kGpioSize = 0x1000;
inline constexpr uint32_t kGpioSpi = 2;
inline constexpr uint32_t kPowerButtonLine = 3;
inline constexpr uint32_t kKeyPower = 116;  // KEY_POWER in linux/input-event-codes.h

inline constexpr uint64_t kVirtioMmioBase = 0x0A00'0000;
inline constexpr uint64_t kVirtioMmioSlotSize = 0x200;
inline constexpr uint32_t kVirtioMmioSlots = 32;
inline constexpr uint32_t kVirtioFirstSpi = 16;

inline constexpr uint64_t kRamBase = 0x4000'0000;
inline constexpr uint64_t kMaxRamBytes = 1ull << 40;

// GIC: SPIs start at interrupt id 32; 128 ids cover every SPI used above.
inline constexpr uint32_t kGicSpiBase = 32;
inline constexpr uint32_t kGicNrIrqs = 128;

}  // namespace snapvm::arch
