// Constants of the snapvm snapshot container format. The prose that explains
// them is docs/snapshot-format.md; a change here is a change there.
//
// Tags and flag bits are written to disk: never reuse or renumber one.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace snapvm::format {

// "SNAPVM" then CR LF: a text-mode transfer that mangles line endings breaks
// the magic instead of silently corrupting the file.
inline constexpr std::array<uint8_t, 8> kMagic = {'S', 'N', 'A', 'P', 'V', 'M', '\r', '\n'};

// Readers of 1.x read every 1.y with y <= kMinor, and newer minors whose
// required sections they know (see docs/snapshot-format.md, Compatibility).
inline constexpr uint16_t kMajor = 1;
inline constexpr uint16_t kMinor = 0;

enum class Arch : uint32_t { kArm64 = 1, kX86_64 = 2 };
std::string_view arch_name(Arch arch);
bool arch_known(uint32_t raw);

// --- Fixed header at file offset 0 --------------------------------------
inline constexpr uint32_t kHeaderSize = 128;
inline constexpr uint32_t kHeaderChecksumOffset = kHeaderSize - 8;

// Header flags. Bits 0-31 describe how the file was written (informational);
// bits 32-63 are incompatible features: a reader refuses any it does not know.
inline constexpr uint64_t kFlagWriterMask = 0xF;
inline constexpr uint64_t kFlagWriterFull = 0;
inline constexpr uint64_t kFlagWriterCompact = 1;
inline constexpr uint64_t kFlagWriterDiff = 2;
inline constexpr uint64_t kFlagsIncompatibleMask = 0xFFFF'FFFF'0000'0000ull;
inline constexpr uint64_t kFlagsIncompatibleKnown = 0;

// --- Guest RAM ----------------------------------------------------------
// Pages are the unit of sparseness, checksums and diffs.
inline constexpr uint32_t kPageSize = 4096;
// RAM regions start at 64 KiB-aligned file offsets: mappable on hosts with
// 4, 16 or 64 KiB pages.
inline constexpr uint64_t kRamAlign = 64 * 1024;
// Checksum tables and the metadata area start on 4 KiB boundaries.
inline constexpr uint64_t kBlockAlign = 4096;

// --- Sections -----------------------------------------------------------
// Each section: u32 tag, u32 flags, u64 payload length, u64 checksum, payload,
// zero padding to 8 bytes. The checksum covers tag, flags, length, payload.
inline constexpr uint32_t kSectionHeaderSize = 24;
inline constexpr uint32_t kSectionRequired = 1u << 0;

enum class Tag : uint32_t {
  kMachineConfig = 1,  // state::MachineShape; its name in files and tools stays "machine-config"
  kRamLayout = 2,
  kVcpuState = 3,  // one per vCPU
  kGicV3State = 4,
  kDeviceState = 5,  // one per device
  kPortForwards = 6,
  kClock = 7,
  kHostIdentity = 8,
  kCreator = 9,  // optional: who wrote the file and when
  kX86VmState = 10,  // x86_64: PIC pair, IOAPIC, PIT, kvmclock
  kExternalRam = 11,  // RAM in a separate memory file (Firecracker's layout); then no RAM in this file
};
std::string_view tag_name(uint32_t tag);

// --- Limits every reader enforces before it allocates -------------------
inline constexpr uint64_t kMaxMetadataBytes = 256ull << 20;
inline constexpr uint32_t kMaxSections = 1u << 16;
inline constexpr uint32_t kMaxRamRegions = 64;
inline constexpr uint64_t kMaxRegionBytes = 1ull << 44;  // 16 TiB
inline constexpr uint32_t kMaxVcpus = 1024;
inline constexpr uint32_t kMaxRegistersPerVcpu = 8192;
inline constexpr uint32_t kMaxRegisterBytes = 256;  // 2048-bit SVE Z registers
inline constexpr uint32_t kMaxDevices = 256;
inline constexpr uint32_t kMaxQueuesPerDevice = 64;
inline constexpr uint32_t kMaxDeviceBlobBytes = 16u << 20;
inline constexpr uint32_t kMaxGicRegisters = 1u << 16;
inline constexpr uint32_t kMaxPortForwards = 4096;
inline constexpr uint32_t kMaxStringBytes = 4096;
inline constexpr uint32_t kMaxIdentityRegs = 256;

}  // namespace snapvm::format
