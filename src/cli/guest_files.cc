#include "cli/guest_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/unique_fd.h"
#ifdef SNAPVM_HAVE_IMAGE
#include "image/digest.h"
#endif

namespace snapvm::cli {
namespace {

// key=value lines.
std::map<std::string, std::string> read_manifest(const std::string& path) {
  std::map<std::string, std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

// `sha256sum` lines: "<64 hex>  <name>".
std::map<std::string, std::string> read_sums(const std::string& path) {
  std::map<std::string, std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > 66 && line.compare(64, 2, "  ") == 0) out[line.substr(66)] = line.substr(0, 64);
  }
  return out;
}

Status check_sum(const std::string& dir, const std::string& name, const std::map<std::string, std::string>& sums) {
  const std::string path = dir + "/" + name;
  auto want = sums.find(name);
  if (want == sums.end()) {
    return make_error(ErrorCode::kDataLoss, "{}/SHA256SUMS names no {}: run `snapvm guest build` again", dir, name);
  }
#ifdef SNAPVM_HAVE_IMAGE
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) return errno_error("open " + path);
  auto got = SNAPVM_TRY(image::sha256_of_fd(fd.get(), path));
  if (got != "sha256:" + want->second) {
    return make_error(ErrorCode::kDataLoss, "{} does not match the SHA-256 recorded when it was built: run `snapvm guest build` again",
                      path);
  }
#endif
  return {};
}

}  // namespace

std::string guest_dir() {
  const char* env = std::getenv("SNAPVM_GUEST_DIR");
  return env != nullptr && *env != '\0' ? env : "/var/lib/snapvm/guest";
}

Result<GuestFiles> load_guest_files(const std::string& dir) {
  GuestFiles g{dir, dir + "/kernel", dir + "/initrd.cpio", read_manifest(dir + "/manifest")};
  if (g.manifest.empty() || ::access(g.kernel.c_str(), R_OK) != 0 || ::access(g.initrd.c_str(), R_OK) != 0) {
    return make_error(ErrorCode::kNotFound,
                      "no guest is built in {}: run `snapvm guest build` (or give --kernel and --initrd)", dir);
  }
  const auto sums = read_sums(dir + "/SHA256SUMS");
  SNAPVM_CHECK_OK(check_sum(dir, "kernel", sums));
  SNAPVM_CHECK_OK(check_sum(dir, "initrd.cpio", sums));
  return g;
}

Status default_to_built_guest(std::string& kernel, std::string& initrd) {
  if (!kernel.empty()) return {};
#ifdef SNAPVM_HAVE_IMAGE
  auto g = SNAPVM_TRY(load_guest_files(guest_dir()));
  kernel = g.kernel;
  if (initrd.empty()) initrd = g.initrd;
  return {};
#else
  (void)initrd;
  return make_error(ErrorCode::kInvalidArgument, "--kernel is required (this static build has no `snapvm guest`)");
#endif
}

std::string find_support_file(const std::string& name) {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  for (const auto& dir : {exe.parent_path() / ".." / "lib" / "snapvm", exe.parent_path()}) {
    const auto path = (dir / name).lexically_normal();
    if (::access(path.c_str(), X_OK) == 0) return path.string();
  }
  return {};
}

}  // namespace snapvm::cli
