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
#include "image/layer.h"

extern char** environ;

namespace snapvm::image {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

Status check_name(const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 128 && name[0] != '.' && name[0] != '-' &&
                  name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") ==
                      std::string::npos;
  if (!ok) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("image name `{}`: use letters, digits, '.', '_', ':' and '-' (up to 128)",
                                  name.substr(0, 200)));
  }
  return {};
}

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
  const uint64_t size = ((content_bytes + content_bytes / 5 + entries * 8192 + 32 * mib) + mib - 1) / mib * mib;
  const std::string size_k = std::to_string(size / 1024) + "k";
  const std::string inodes = std::to_string(entries + 4096);
  const fs::path log = image.parent_path() / "mkfs.log";
  std::vector<std::string> args = {"mkfs.ext4", "-q", "-F", "-L", "snapvm-root", "-N", inodes,
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

json config_json(const RunConfig& c) {
  return {{"entrypoint", c.entrypoint}, {"cmd", c.cmd},   {"env", c.env},
          {"working_dir", c.working_dir}, {"user", c.user}, {"exposed_tcp_ports", c.exposed_tcp_ports}};
}

Result<StoredImage> read_stored(const fs::path& dir) {
  std::ifstream in(dir / "image.json");
  if (!in) return make_error(ErrorCode::kNotFound, fmt::format("no image at {}", dir.string()));
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}/image.json: not valid", dir.string()));
  }
  try {
    StoredImage s;
    s.name = j.value("name", "");
    s.digest = j.value("digest", "");
    s.architecture = j.value("architecture", "");
    s.rootfs = (dir / "rootfs.ext4").string();
    s.rootfs_bytes = j.value("rootfs_bytes", uint64_t{0});
    const json c = j.value("config", json::object());
    s.config.entrypoint = c.value("entrypoint", std::vector<std::string>{});
    s.config.cmd = c.value("cmd", std::vector<std::string>{});
    s.config.env = c.value("env", std::vector<std::string>{});
    s.config.working_dir = c.value("working_dir", "");
    s.config.user = c.value("user", "");
    s.config.exposed_tcp_ports = c.value("exposed_tcp_ports", std::vector<uint16_t>{});
    return s;
  } catch (const json::exception& e) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}/image.json: {}", dir.string(), e.what()));
  }
}

}  // namespace

std::string default_store() {
  const char* env = std::getenv("SNAPVM_IMAGE_STORE");
  return env != nullptr && *env != 0 ? env : "/var/lib/snapvm/images";
}

Result<ImportResult> import_image(const std::string& source, const std::string& name, const ImportOptions& o) {
  SNAPVM_CHECK_OK(check_name(name));
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
  if (auto existing = read_stored(final_dir); existing && existing->digest == src->digest) {
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
               {"config", config_json(src->config)}};
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

Result<StoredImage> find_image(const std::string& store, const std::string& name) {
  SNAPVM_CHECK_OK(check_name(name));
  return read_stored(fs::path(store) / name);
}

Result<std::vector<StoredImage>> list_images(const std::string& store) {
  std::vector<StoredImage> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(store, ec)) {
    if (!e.is_directory() || e.path().filename().string().starts_with(".")) continue;
    if (auto s = read_stored(e.path())) out.push_back(std::move(*s));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

}  // namespace snapvm::image
