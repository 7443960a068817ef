#include "arch/x86_64/boot_params.h"

#include <algorithm>
#include <cstring>

#include "arch/x86_64/layout.h"

namespace snapvm::arch::x86 {
namespace {

uint64_t le(std::span<const uint8_t> b, size_t off, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= uint64_t{b[off + i]} << (8 * i);
  return v;
}
void put(std::vector<uint8_t>& b, size_t off, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}

constexpr size_t kSetupHeaderOffset = 0x1f1;
constexpr uint32_t kHdrMagic = 0x53726448;  // "HdrS"
constexpr uint16_t kXlfKernel64 = 1u << 0;
constexpr uint64_t k2MiB = 2ull << 20;

}  // namespace

Result<KernelImage> parse_bzimage(std::span<const uint8_t> image, const std::string& name) {
  if (image.size() < 0x270 || le(image, 0x202, 4) != kHdrMagic || le(image, 0x1fe, 2) != 0xaa55) {
    return make_error(ErrorCode::kInvalidArgument,
                      "{} is not an x86 bzImage or ELF vmlinux (no \"HdrS\" boot header, no ELF header)", name);
  }
  uint16_t version = static_cast<uint16_t>(le(image, 0x206, 2));
  uint16_t xloadflags = static_cast<uint16_t>(le(image, 0x236, 2));
  if (version < 0x20c || (xloadflags & kXlfKernel64) == 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "{}: boot protocol {}.{} without a 64-bit entry point; a 64-bit kernel of protocol 2.12 or later "
                      "is needed", name, version >> 8, version & 0xff);
  }
  size_t header_end = 0x202 + image[0x201];  // the jump at 0x200 skips the header
  uint32_t setup_sects = image[0x1f1] == 0 ? 4 : image[0x1f1];
  size_t pm_offset = (size_t{setup_sects} + 1) * 512;
  if (header_end > image.size() || pm_offset >= image.size()) {
    return make_error(ErrorCode::kInvalidArgument, "{}: truncated bzImage", name);
  }
  KernelImage k;
  auto header = image.subspan(kSetupHeaderOffset, header_end - kSetupHeaderOffset);
  k.setup_header.assign(header.begin(), header.end());
  auto protected_mode = image.subspan(pm_offset);
  // While it boots the kernel uses init_size bytes from where it was
  // loaded (it decompresses itself there), so that much must be RAM.
  uint32_t init_size = static_cast<uint32_t>(le(image, 0x260, 4));
  k.segments.push_back({kKernelAddr, protected_mode, std::max<uint64_t>(init_size, protected_mode.size())});
  k.entry = kKernelAddr + 0x200;  // startup_64 of the decompressor
  k.cmdline_size = static_cast<uint32_t>(le(image, 0x238, 4));
  k.initrd_addr_max = static_cast<uint32_t>(le(image, 0x22c, 4));
  k.end = kKernelAddr + k.segments.front().mem_size;
  return k;
}

std::vector<uint8_t> loader_setup_header() {
  std::vector<uint8_t> zp(0x270, 0);  // positions as in boot_params, cut at kSetupHeaderOffset below
  put(zp, 0x1fe, 0xaa55, 2);      // boot_flag
  put(zp, 0x202, kHdrMagic, 4);   // "HdrS"
  put(zp, 0x206, 0x020f, 2);      // protocol 2.15
  put(zp, 0x22c, kLoaderInitrdAddrMax, 4);  // initrd_addr_max
  put(zp, 0x230, k2MiB, 4);       // kernel_alignment
  put(zp, 0x236, 0x3, 2);         // xloadflags: 64-bit entry, may live above 4 GiB
  put(zp, 0x238, kLoaderCmdlineSize, 4);  // cmdline_size
  return {zp.begin() + kSetupHeaderOffset, zp.end()};
}

Result<KernelImage> parse_kernel(std::span<const uint8_t> image, const std::string& name) {
  static constexpr uint8_t kElfMagic[4] = {0x7f, 'E', 'L', 'F'};
  if (image.size() >= 4 && std::equal(kElfMagic, kElfMagic + 4, image.begin())) return parse_elf_vmlinux(image, name);
  return parse_bzimage(image, name);
}

Result<BootPlan> plan_boot(const KernelImage& kernel, std::span<const RamRange> ram, uint64_t initrd_size,
                           size_t cmdline_bytes) {
  if (ram.empty() || ram.front().gpa != 0) return make_error(ErrorCode::kFailedPrecondition, "x86 RAM must start at 0");
  const uint64_t low_end = ram.front().size;
  if (cmdline_bytes + 1 > std::min<uint64_t>(kernel.cmdline_size, kCmdlineMax)) {
    return make_error(ErrorCode::kInvalidArgument, "the kernel command line is {} bytes; this kernel takes at most {}",
                      cmdline_bytes, kernel.cmdline_size - 1);
  }
  for (const auto& s : kernel.segments) {
    // Below 1 MiB live boot_params, page tables, command line and ACPI.
    if (s.gpa < kKernelAddr) {
      return make_error(ErrorCode::kInvalidArgument, "the kernel wants to be loaded at {:#x}, below 1 MiB", s.gpa);
    }
  }
  BootPlan p;
  p.kernel_end = kernel.end;
  if (p.kernel_end > low_end) {
    return make_error(ErrorCode::kInvalidArgument, "{} MiB of RAM cannot hold the kernel ({} MiB while booting)",
                      low_end >> 20, p.kernel_end >> 20);
  }
  if (initrd_size != 0) {
    uint64_t limit = std::min<uint64_t>(low_end, uint64_t{kernel.initrd_addr_max} + 1);
    uint64_t addr = limit >= initrd_size ? (limit - initrd_size) / k2MiB * k2MiB : 0;
    if (addr < p.kernel_end) {
      return make_error(ErrorCode::kInvalidArgument,
                        "{} MiB of RAM cannot hold the kernel and a {} MiB initrd: give more memory", low_end >> 20,
                        initrd_size >> 20);
    }
    p.initrd_addr = addr;
    p.initrd_size = initrd_size;
  }
  return p;
}

std::vector<E820Entry> e820_map(std::span<const RamRange> ram) {
  std::vector<E820Entry> map;
  map.push_back({0, kEbdaStart, 1});
  map.push_back({kEbdaStart, kKernelAddr - kEbdaStart, 2});
  if (!ram.empty() && ram.front().size > kKernelAddr) map.push_back({kKernelAddr, ram.front().size - kKernelAddr, 1});
  for (size_t i = 1; i < ram.size(); ++i) map.push_back({ram[i].gpa, ram[i].size, 1});
  return map;
}

std::vector<uint8_t> boot_params(const KernelImage& kernel, const BootPlan& plan, uint64_t cmdline_gpa,
                                 size_t cmdline_bytes, std::span<const E820Entry> e820, uint64_t rsdp_gpa) {
  std::vector<uint8_t> zp(4096, 0);
  std::memcpy(zp.data() + kSetupHeaderOffset, kernel.setup_header.data(), kernel.setup_header.size());
  put(zp, 0x070, rsdp_gpa, 8);   // acpi_rsdp_addr
  put(zp, 0x210, 0xff, 1);       // type_of_loader: undefined
  uint8_t loadflags = zp[0x211];
  loadflags |= 0x01;             // LOADED_HIGH
  loadflags &= static_cast<uint8_t>(~0x20);  // QUIET_FLAG off: early messages allowed
  zp[0x211] = loadflags;
  put(zp, 0x228, cmdline_gpa, 4);             // cmd_line_ptr
  put(zp, 0x0c8, cmdline_gpa >> 32, 4);       // ext_cmd_line_ptr
  put(zp, 0x218, plan.initrd_addr, 4);        // ramdisk_image
  put(zp, 0x21c, plan.initrd_size, 4);        // ramdisk_size
  put(zp, 0x0c0, plan.initrd_addr >> 32, 4);  // ext_ramdisk_image
  put(zp, 0x0c4, plan.initrd_size >> 32, 4);  // ext_ramdisk_size
  put(zp, 0x238, cmdline_bytes, 4);
  size_t n = std::min<size_t>(e820.size(), 128);
  zp[0x1e8] = static_cast<uint8_t>(n);
  for (size_t i = 0; i < n; ++i) {
    put(zp, 0x2d0 + 20 * i, e820[i].addr, 8);
    put(zp, 0x2d0 + 20 * i + 8, e820[i].size, 8);
    put(zp, 0x2d0 + 20 * i + 16, e820[i].type, 4);
  }
  return zp;
}

std::vector<uint64_t> boot_gdt() {
  return {
      0,
      0,
      0x00af'9b00'0000'ffffull,  // 0x10: 64-bit code, present, ring 0
      0x00cf'9300'0000'ffffull,  // 0x18: data, 4 GiB, writable
      0x0080'8b00'0000'0067ull,  // 0x20: 64-bit TSS (busy), as VM entry wants one
  };
}

std::vector<uint8_t> identity_page_tables(uint64_t pml4_gpa) {
  std::vector<uint8_t> t(6 * 4096, 0);
  const uint64_t pdpt = pml4_gpa + 4096, pd = pml4_gpa + 2 * 4096;
  put(t, 0, pdpt | 0x3, 8);  // present, writable
  for (uint64_t i = 0; i < 4; ++i) put(t, 4096 + 8 * i, (pd + i * 4096) | 0x3, 8);
  for (uint64_t i = 0; i < 4 * 512; ++i) put(t, 2 * 4096 + 8 * i, (i * k2MiB) | 0x83, 8);  // 2 MiB pages
  return t;
}

}  // namespace snapvm::arch::x86
