// libFuzzer target: an x86_64 kernel file (bzImage or ELF vmlinux), which
// reaches the VMM from the command line and from Firecracker's API
// (boot-source). Parsing, planning the boot and building boot_params must
// never read outside the file or accept a kernel that does not fit RAM.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "arch/x86_64/boot_params.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace snapvm::arch::x86;
  auto kernel = parse_kernel(std::span<const uint8_t>(data, size), "fuzz");
  if (!kernel) return 0;
  const RamRange ram[] = {{0, 256ull << 20}};
  auto plan = plan_boot(*kernel, ram, 1 << 20, 64);
  if (!plan) return 0;
  for (const auto& s : kernel->segments) {
    // What the platform copies must lie inside the file and inside RAM.
    if (s.bytes.data() < data || s.bytes.data() + s.bytes.size() > data + size) std::abort();
    if (s.gpa + s.mem_size > plan->kernel_end || s.bytes.size() > s.mem_size) std::abort();
  }
  if (plan->kernel_end > ram[0].size || plan->initrd_addr < plan->kernel_end) std::abort();
  auto zp = boot_params(*kernel, *plan, 0x20000, 64, e820_map(ram), 0xe0000);
  if (zp.size() != 4096) std::abort();
  return 0;
}
