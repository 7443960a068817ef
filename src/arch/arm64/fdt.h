// The flattened device tree the arm64 guest kernel boots with.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace snapvm::arch {

struct VirtioMmioNode {
  uint64_t base = 0;
  uint64_t size = 0;
  uint32_t spi = 0;
};

struct FdtConfig {
  uint64_t ram_base = 0;
  uint64_t ram_size = 0;
  std::vector<uint64_t> mpidrs;  // one per vCPU, affinity fields only
  std::string cmdline;
  uint64_t initrd_addr = 0;
  uint64_t initrd_size = 0;  // 0: no initrd
  std::vector<VirtioMmioNode> virtio;
};

Result<std::vector<uint8_t>> build_fdt(const FdtConfig& config);

}  // namespace snapvm::arch
