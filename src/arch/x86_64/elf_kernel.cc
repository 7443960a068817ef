// An uncompressed x86_64 kernel (vmlinux, the ELF that Firecracker's x86
// guides boot): its loadable segments go to their physical addresses and
// the vCPU starts at e_entry, which the kernel's linker script points at
// the physical address of startup_64. That entry takes the same 64-bit boot
// protocol as a bzImage's (paging on, RSI at boot_params), so the rest of
// the boot is shared; only the setup header, which a bzImage carries and an
// ELF does not, is made by loader_setup_header.
#include <elf.h>

#include <algorithm>
#include <cstring>

#include "arch/x86_64/boot_params.h"
#include "arch/x86_64/layout.h"

namespace snapvm::arch::x86 {
namespace {

constexpr size_t kMaxSegments = 64;
constexpr uint64_t kIdentityMapped = 4ull << 30;  // what identity_page_tables maps

template <typename T>
T read_at(std::span<const uint8_t> image, uint64_t offset) {
  T v;
  std::memcpy(&v, image.data() + offset, sizeof v);
  return v;
}

}  // namespace

Result<KernelImage> parse_elf_vmlinux(std::span<const uint8_t> image, const std::string& name) {
  auto bad = [&](const char* why) {
    return make_error(ErrorCode::kInvalidArgument, "{} is not a usable x86_64 vmlinux: {}", name, why);
  };
  if (image.size() < sizeof(Elf64_Ehdr)) return bad("shorter than an ELF header");
  const auto eh = read_at<Elf64_Ehdr>(image, 0);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB) return bad("not 64-bit little-endian");
  if (eh.e_machine != EM_X86_64) return bad("built for another machine");
  if (eh.e_type != ET_EXEC) return bad("not an executable");
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > kMaxSegments) {
    return bad("no program headers, or program headers of an unknown size");
  }
  if (eh.e_phoff > image.size() || image.size() - eh.e_phoff < uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr)) {
    return bad("program headers past the end of the file");
  }
  KernelImage k;
  for (size_t i = 0; i < eh.e_phnum; ++i) {
    const auto ph = read_at<Elf64_Phdr>(image, eh.e_phoff + i * sizeof(Elf64_Phdr));
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    if (ph.p_offset > image.size() || image.size() - ph.p_offset < ph.p_filesz) return bad("a segment past the end of the file");
    if (ph.p_filesz > ph.p_memsz) return bad("a segment larger in the file than in memory");
    if (ph.p_paddr > kIdentityMapped || kIdentityMapped - ph.p_paddr < ph.p_memsz) {
      return bad("a segment outside the first 4 GiB");
    }
    k.segments.push_back({ph.p_paddr, image.subspan(ph.p_offset, ph.p_filesz), ph.p_memsz});
  }
  if (k.segments.empty()) return bad("nothing to load");
  std::sort(k.segments.begin(), k.segments.end(), [](const auto& a, const auto& b) { return a.gpa < b.gpa; });
  for (size_t i = 1; i < k.segments.size(); ++i) {
    if (k.segments[i - 1].gpa + k.segments[i - 1].mem_size > k.segments[i].gpa) return bad("overlapping segments");
  }
  const bool entry_loaded = std::any_of(k.segments.begin(), k.segments.end(), [&](const KernelSegment& s) {
    return eh.e_entry >= s.gpa && eh.e_entry - s.gpa < s.bytes.size();
  });
  if (!entry_loaded) return bad("its entry point is in no loaded segment");
  k.entry = eh.e_entry;
  k.end = k.segments.back().gpa + k.segments.back().mem_size;
  k.setup_header = loader_setup_header();
  k.cmdline_size = kLoaderCmdlineSize;
  k.initrd_addr_max = kLoaderInitrdAddrMax;
  return k;
}

}  // namespace snapvm::arch::x86
