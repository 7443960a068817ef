// The x86 64-bit boot protocol (Documentation/arch/x86/boot.rst): the
// kernel's setup header (a bzImage's, or one made for an ELF vmlinux), where kernel, command line and initrd go, the
// boot_params page with its e820 map, and the GDT and identity page tables
// the kernel's 64-bit entry point expects. Pure bytes: built and tested on
// any host; the platform writes them into guest RAM.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace snapvm::arch::x86 {

// A piece of the kernel copied into guest RAM before it runs; RAM past
// `bytes` up to `mem_size` is zero (fresh guest RAM is).
struct KernelSegment {
  uint64_t gpa = 0;
  std::span<const uint8_t> bytes;
  uint64_t mem_size = 0;
};

// A kernel ready to load: a bzImage (Debian's vmlinuz) or an ELF vmlinux
// (Firecracker's usual x86 kernel), both entered at their 64-bit entry
// point with boot_params. The spans point into the file's bytes.
struct KernelImage {
  std::vector<KernelSegment> segments;
  uint64_t entry = 0;                 // guest-physical 64-bit entry point
  std::vector<uint8_t> setup_header;  // boot_params bytes 0x1f1 .. end of the header
  uint32_t cmdline_size = 0;          // longest command line the kernel takes, with the NUL
  uint32_t initrd_addr_max = 0;       // highest byte an initrd may occupy
  uint64_t end = 0;                   // first byte past what the kernel uses while booting
};

// Checks the "HdrS" header, protocol 2.12 or later with the 64-bit entry
// point (XLF_KERNEL_64): one segment, the protected-mode part at kKernelAddr.
Result<KernelImage> parse_bzimage(std::span<const uint8_t> image, const std::string& name);

// An x86_64 ELF executable (vmlinux): its PT_LOAD segments at their
// physical addresses, entered at e_entry (phys_startup_64) through the same
// 64-bit boot protocol, with a setup header made here since the file has
// none. Every offset and size is checked against the file.
Result<KernelImage> parse_elf_vmlinux(std::span<const uint8_t> image, const std::string& name);

// The limits that header states, which the boot then honours.
inline constexpr uint32_t kLoaderCmdlineSize = 2047;  // x86's COMMAND_LINE_SIZE less the NUL
inline constexpr uint32_t kLoaderInitrdAddrMax = 0x7fffffff;

// boot_params 0x1f1 .. 0x26f for a kernel that carries no setup header (an
// ELF vmlinux): what a boot loader of protocol 2.15 would find in a bzImage,
// the signature fields, the version and the limits the rest of the boot honours.
std::vector<uint8_t> loader_setup_header();

// Either of the two, told apart by the ELF magic.
Result<KernelImage> parse_kernel(std::span<const uint8_t> image, const std::string& name);

struct E820Entry {
  uint64_t addr = 0;
  uint64_t size = 0;
  uint32_t type = 1;  // 1 RAM, 2 reserved
};

struct RamRange {
  uint64_t gpa = 0;
  uint64_t size = 0;
};

struct BootPlan {
  uint64_t initrd_addr = 0;  // 0: none
  uint64_t initrd_size = 0;
  uint64_t kernel_end = 0;
};

// Checks that RAM (the first region starts at 0) holds kernel, boot data
// and initrd, and that the kernel stays clear of the boot data below 1 MiB;
// the initrd goes at the top of the low region, under the kernel's limit.
Result<BootPlan> plan_boot(const KernelImage& kernel, std::span<const RamRange> ram, uint64_t initrd_size,
                           size_t cmdline_bytes);

// The e820 map for `ram`: RAM below the EBDA, the BIOS area reserved, RAM
// from 1 MiB, and every further region.
std::vector<E820Entry> e820_map(std::span<const RamRange> ram);

// The 4096-byte boot_params page.
std::vector<uint8_t> boot_params(const KernelImage& kernel, const BootPlan& plan, uint64_t cmdline_gpa,
                                 size_t cmdline_bytes, std::span<const E820Entry> e820, uint64_t rsdp_gpa);

// The GDT (null, null, 64-bit code at 0x10, data at 0x18, TSS at 0x20) and
// page tables mapping the first 4 GiB one to one with 2 MiB pages.
inline constexpr uint16_t kCodeSelector = 0x10;
inline constexpr uint16_t kDataSelector = 0x18;
inline constexpr uint16_t kTssSelector = 0x20;
std::vector<uint64_t> boot_gdt();
// PML4, PDPT and four page directories, 4 KiB each, consecutive from pml4_gpa.
std::vector<uint8_t> identity_page_tables(uint64_t pml4_gpa);

}  // namespace snapvm::arch::x86
