#include "test_util.h"

#include <sys/mount.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include <fmt/format.h>

namespace snapvm::test {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "snapvm-test-XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) std::abort();
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool is_root() { return ::geteuid() == 0; }

std::unique_ptr<ScratchMount> ScratchMount::tmpfs(uint64_t bytes) {
  std::unique_ptr<ScratchMount> m(new ScratchMount());
  std::string opts = fmt::format("size={}", bytes);
  if (::mount("tmpfs", m->dir_.path().c_str(), "tmpfs", 0, opts.c_str()) != 0) return nullptr;
  m->mounted_ = true;
  return m;
}

std::unique_ptr<ScratchMount> ScratchMount::xfs_reflink(uint64_t bytes) {
  std::unique_ptr<ScratchMount> m(new ScratchMount());
  std::string image = m->image_dir_.file("xfs.img");
  std::string cmd = fmt::format(
      "truncate -s {} {} && mkfs.xfs -q -f -m reflink=1 {} >/dev/null 2>&1 && mount -o loop {} {} 2>/dev/null", bytes,
      image, image, image, m->dir_.path());
  if (std::system(cmd.c_str()) != 0) return nullptr;
  m->mounted_ = true;
  return m;
}

ScratchMount::~ScratchMount() {
  if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
}

SampleVm::SampleVm(uint64_t bytes, double density, uint64_t seed, uint32_t vcpus, format::Arch arch)
    : ram(std::move(MappedRegion::anonymous(bytes).value())) {
  sample::fill_ram(ram.span(), density, seed);
  const bool x86 = arch == format::Arch::kX86_64;
  base = x86 ? sample::kX86RamBase : sample::kRamBase;
  RamExtent e{base, bytes};
  state = x86 ? sample::make_x86_state(vcpus, {&e, 1}, seed) : sample::make_state(vcpus, {&e, 1}, seed);
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::string> temp_files_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().find(".snapvm-tmp-") != std::string::npos) out.push_back(e.path().string());
  }
  return out;
}

uint64_t allocated_bytes(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

}  // namespace snapvm::test
