// The arm64 Linux boot protocol: the Image header, and where the kernel,
// initrd and device tree go in guest RAM.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace snapvm::arch {

struct KernelImage {
  std::span<const uint8_t> bytes;  // the file, owned by the caller
  uint64_t text_offset = 0;  // load offset from a 2 MiB-aligned base
  uint64_t image_size = 0;   // bytes the kernel occupies once loaded, BSS included
};

// Checks an uncompressed arm64 Image ("ARM\x64" magic at 0x38); the result
// points into `bytes`.
Result<KernelImage> parse_kernel_image(std::span<const uint8_t> bytes, const std::string& name);

struct BootLayout {
  uint64_t kernel_addr = 0;
  uint64_t kernel_end = 0;
  uint64_t initrd_addr = 0;
  uint64_t initrd_size = 0;
  uint64_t dtb_addr = 0;
};

inline constexpr uint64_t kMaxDtbBytes = 2ull << 20;

// Kernel at RAM base + text_offset; DTB in the last 2 MiB-aligned block below
// min(RAM end, RAM base + 1 GiB); initrd just below the DTB. Errors when RAM
// cannot hold them all.
Result<BootLayout> plan_boot(uint64_t ram_base, uint64_t ram_size, const KernelImage& kernel, uint64_t initrd_size);

}  // namespace snapvm::arch
