#include "arch/arm64/kernel_image.h"


#include <algorithm>

#include "base/byte_codec.h"

namespace snapvm::arch {
namespace {

constexpr uint32_t kImageMagic = 0x644d5241;  // "ARM\x64"
constexpr uint64_t kHeaderBytes = 64;
constexpr uint64_t k2MiB = 2ull << 20;

uint64_t align_down(uint64_t v, uint64_t a) { return v / a * a; }

}  // namespace

Result<KernelImage> parse_kernel_image(std::span<const uint8_t> bytes, const std::string& name) {
  if (bytes.size() < kHeaderBytes) {
    return make_error(ErrorCode::kInvalidArgument, "kernel {} is not an arm64 Image ({} bytes, no header)", name,
                      bytes.size());
  }
  ByteReader r(bytes.first(kHeaderBytes), 0, "kernel header");
  r.bytes(8);  // code0, code1
  KernelImage k;
  k.text_offset = r.u64();
  k.image_size = r.u64();
  r.bytes(32);  // flags, res2-4
  uint32_t magic = r.u32();
  if (magic != kImageMagic) {
    bool gzip = bytes[0] == 0x1f && bytes[1] == 0x8b;
    return make_error(ErrorCode::kInvalidArgument, "kernel {} is not an arm64 Image (bad magic{})", name,
                      gzip ? "; it is gzip-compressed: gunzip it first" : "");
  }
  // Kernels before 3.17 left image_size zero; the file size is a lower bound.
  if (k.image_size == 0) k.image_size = bytes.size() + (1ull << 20);
  if (k.image_size < bytes.size() || k.text_offset % 4096 != 0 || k.text_offset >= k2MiB * 64) {
    return make_error(ErrorCode::kInvalidArgument, "kernel {}: implausible header (text_offset {:#x}, image_size {:#x})",
                      name, k.text_offset, k.image_size);
  }
  k.bytes = bytes;
  return k;
}

Result<BootLayout> plan_boot(uint64_t ram_base, uint64_t ram_size, const KernelImage& kernel, uint64_t initrd_size) {
  BootLayout b;
  b.kernel_addr = ram_base + kernel.text_offset;
  b.kernel_end = b.kernel_addr + kernel.image_size;
  uint64_t top = std::min<uint64_t>(ram_base + ram_size, ram_base + (uint64_t{1} << 30));
  if (top < ram_base + k2MiB) {
    return make_error(ErrorCode::kInvalidArgument, "{} bytes of RAM cannot hold a kernel", ram_size);
  }
  b.dtb_addr = align_down(top - kMaxDtbBytes, k2MiB);
  b.initrd_size = initrd_size;
  b.initrd_addr = align_down(b.dtb_addr - initrd_size, 4096);
  if (initrd_size > b.dtb_addr - ram_base || b.initrd_addr < b.kernel_end || b.dtb_addr < b.kernel_end) {
    return make_error(ErrorCode::kInvalidArgument,
                      "{} MiB of RAM cannot hold the kernel ({} MiB loaded), initrd ({} MiB) and device tree: "
                      "give more memory",
                      ram_size >> 20, (kernel.image_size + (1 << 20) - 1) >> 20, (initrd_size + (1 << 20) - 1) >> 20);
  }
  return b;
}

}  // namespace snapvm::arch
