#include "image/store.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/unique_fd.h"
#include "image/catalog.h"
#include "image/layer.h"

extern char** environ;

namespace snapvm::image {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Removes a scratch directory unless released.
class ScratchDir {
 public:
  explicit ScratchDir(fs::path p) : path_(std::move(p)) {}
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

Result<uint64_t> apply_all(const std::vector<std::string>& layers, const fs::path& root, uint64_t& budget,
                           const ImportOptions& o, uint64_t& entries) {
  fs::create_directories(root);
  fs::permissions(root, fs::perms(0755));
  UniqueFd root_fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root_fd.get() < 0) return errno_error("open " + root.string());
  uint64_t bytes = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto stats = apply_layer(layers[i], root_fd.get(), LayerLimits{}, budget);
    if (!stats) return tl::unexpected(stats.error());
    bytes += stats->bytes;
    entries += stats->entries;
    if (o.progress) {
      o.progress(fmt::format("layer {}/{}: {} files, {} directories, {} links, {} whiteouts, {:.1f} MiB", i + 1,
                             layers.size(), stats->files, stats->dirs, stats->symlinks + stats->hardlinks,
                             stats->whiteouts, stats->bytes / 1048576.0));
    }
  }
  return bytes;
}

// mkfs.ext4 -d: an ext4 image of `dir` without mounting anything.
Status make_ext4(const fs::path& dir, const fs::path& image, uint64_t content_bytes, uint64_t entries) {
  const uint64_t mib = 1 << 20;
  // Mounted read-only under an overlay (the writes of a VM go to its RAM):
  // no journal, and room only for metadata beyond the files.
  const uint64_t size = ((content_bytes + content_bytes / 5 + entries * 8192 + 8 * mib) + mib - 1) / mib * mib;
  const std::string size_k = std::to_string(size / 1024) + "k";
  const std::string inodes = std::to_string(entries + 4096);
  const fs::path log = image.parent_path() / "mkfs.log";
  std::vector<std::string> args = {"mkfs.ext4", "-q", "-F", "-L", "snapvm-root", "-O", "^has_journal", "-N", inodes,
                                   "-d", dir.string(), image.string(), size_k};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid;
  int rc = ::posix_spawnp(&pid, "mkfs.ext4", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return errno_error("run mkfs.ext4 (install e2fsprogs)", rc);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::ifstream in(log);
    std::string first;
    std::getline(in, first);
    return make_error(ErrorCode::kIo, fmt::format("mkfs.ext4 failed: {}", first));
  }
  fs::remove(log);
  return {};
}

}  // namespace

Result<ImportResult> import_image(const std::string& source, const std::string& name, const ImportOptions& o) {
  SNAPVM_CHECK_OK(check_image_name(name));
  std::error_code ec;
  fs::create_directories(o.store, ec);
  if (ec) return make_error(ErrorCode::kIo, fmt::format("image store {}: {}", o.store, ec.message()));
  struct stat st {};
  if (::stat(source.c_str(), &st) != 0) return errno_error(source);
  ScratchDir scratch(fs::path(o.store) / fmt::format(".import-{}-{}", name, ::getpid()));
  fs::remove_all(scratch.path(), ec);
  fs::create_directories(scratch.path() / "out");
  uint64_t budget = o.max_bytes;

  std::string dir = source;
  if (S_ISREG(st.st_mode)) {  // a tarball: unpacked first, by the same careful hands as a layer
    const fs::path unpacked = scratch.path() / "archive";
    fs::create_directories(unpacked);
    UniqueFd fd(::open(unpacked.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (o.progress) o.progress("unpacking " + source);
    uint64_t unpack_budget = o.max_bytes;
    auto r = apply_layer(source, fd.get(), LayerLimits{}, unpack_budget);
    if (!r) return tl::unexpected(r.error());
    dir = unpacked.string();
  } else if (!S_ISDIR(st.st_mode)) {
    return make_error(ErrorCode::kInvalidArgument, fmt::format("{}: not a directory or a tarball", source));
  }
  auto src = read_image_dir(dir);
  if (!src) return tl::unexpected(src.error());

  ImportResult result;
  result.name = name;
  result.digest = src->digest;
  result.layers = src->layers.size();
  const fs::path final_dir = fs::path(o.store) / name;
  result.rootfs = (final_dir / "rootfs.ext4").string();
  if (auto existing = find_image(o.store, name); existing && existing->digest == src->digest) {
    result.reused = true;
    result.rootfs_bytes = existing->rootfs_bytes;
    return result;
  }
  uint64_t entries = 0;
  auto bytes = apply_all(src->layers, scratch.path() / "rootfs", budget, o, entries);
  if (!bytes) return tl::unexpected(bytes.error());
  result.content_bytes = *bytes;
  if (o.progress) o.progress(fmt::format("building rootfs.ext4 from {:.1f} MiB in {} entries", *bytes / 1048576.0,
                                         entries));
  const fs::path out = scratch.path() / "out";
  SNAPVM_CHECK_OK(make_ext4(scratch.path() / "rootfs", out / "rootfs.ext4", *bytes, entries));
  result.rootfs_bytes = fs::file_size(out / "rootfs.ext4");
  json meta = {{"name", name},
               {"digest", src->digest},
               {"architecture", src->architecture},
               {"layers", src->layers.size()},
               {"content_bytes", *bytes},
               {"rootfs_bytes", result.rootfs_bytes},
               {"config", run_config_json(src->config)}};
  {
    std::ofstream f(out / "image.json");
    f << meta.dump(2) << "\n";
    if (!f.flush()) return make_error(ErrorCode::kIo, "write image.json");
  }
  // Into place: the old image (if any) moves aside first, then goes.
  const fs::path old = scratch.path() / "previous";
  if (fs::exists(final_dir)) fs::rename(final_dir, old);
  fs::rename(out, final_dir, ec);
  if (ec) {
    if (fs::exists(old)) fs::rename(old, final_dir);
    return make_error(ErrorCode::kIo, fmt::format("move the image into {}: {}", final_dir.string(), ec.message()));
  }
  return result;
}

}  // namespace snapvm::image
