#include "image/store.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "base/unique_fd.h"
#include "image/catalog.h"
#include "image/docker_archive.h"
#include "image/interrupt.h"
#include "image/layer.h"
#include "image/scratch_dir.h"
#include "image/source_ref.h"
#include "image/tree.h"

extern char** environ;

namespace snapvm::image {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A directory `name` in `parent_fd`, made with exactly `mode` (not what the
// umask leaves of it), and opened.
Result<UniqueFd> make_dir(int parent_fd, const std::string& name, mode_t mode, const std::string& what) {
  if (::mkdirat(parent_fd, name.c_str(), mode) != 0) return errno_error("make " + what);
  UniqueFd fd(::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid() || ::fchmod(fd.get(), mode) != 0) return errno_error("open " + what);
  return fd;
}

// A step's byte progress as ImportOptions::bytes hears it, or nothing.
ProgressFn step_progress(const ImportOptions& o, const std::string& step) {
  if (!o.bytes) return {};
  return [&o, step](uint64_t done, uint64_t total) { o.bytes(step, done, total); };
}

Result<uint64_t> apply_all(const std::vector<ImageLayer>& layers, int scratch_fd, const std::string& scratch,
                           uint64_t& budget, const ImportOptions& o, uint64_t& entries) {
  auto root = SNAPVM_TRY(make_dir(scratch_fd, "rootfs", 0755, scratch + "/rootfs"));
  uint64_t bytes = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto stats = apply_layer(layers[i].fd.get(), layers[i].name, root.get(), LayerLimits{}, budget,
                             step_progress(o, fmt::format("layer {}/{}", i + 1, layers.size())));
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

// What mkfs.ext4 will have written when it is done: the files, per entry
// an inode and a directory entry's share of a block, and a little for the
// superblocks and bitmaps. An estimate, for progress only.
uint64_t expected_ext4_bytes(uint64_t content_bytes, uint64_t entries) {
  return content_bytes + entries * 2048 + (1 << 20);
}

// Waits for mkfs.ext4, telling `progress` how much of `image` it has
// written so far (its allocated blocks: the file is sparse until written);
// an interrupted import stops it rather than waiting for it to finish a
// file that is about to be removed.
Result<int> wait_for(pid_t pid, const fs::path& image, uint64_t expected, const ProgressFn& progress) {
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, progress ? WNOHANG : 0);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return errno_error("wait for mkfs.ext4");
    if (interrupting_signal() != 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return tl::unexpected(check_interrupt().error());
    }
    if (r == 0) {
      struct stat st {};
      if (::stat(image.c_str(), &st) == 0) {
        // Short of the total until mkfs is done, whatever the estimate missed.
        progress(std::min<uint64_t>(static_cast<uint64_t>(st.st_blocks) * 512, expected - 1), expected);
      }
      // A signal ends the nap early; the loop then sees it.
      const timespec nap{0, 100'000'000};
      ::nanosleep(&nap, nullptr);
    }
  }
}

// mkfs.ext4 -d: an ext4 image of `dir` without mounting anything.
Status make_ext4(const fs::path& dir, const fs::path& image, uint64_t content_bytes, uint64_t entries,
                 const ProgressFn& progress) {
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
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid;
  int rc = ::posix_spawnp(&pid, "mkfs.ext4", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return errno_error("run mkfs.ext4 (install e2fsprogs)", rc);
  const uint64_t expected = expected_ext4_bytes(content_bytes, entries);
  const int status = SNAPVM_TRY(wait_for(pid, image, expected, progress));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    // Its first words (it may begin with an empty line), and how it ended.
    std::ifstream in(log);
    std::string said;
    for (std::string line; said.size() < 300 && std::getline(in, line);) {
      if (!line.empty()) said += (said.empty() ? "" : "; ") + line;
    }
    const std::string how = WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                              : fmt::format("signal {}", WTERMSIG(status));
    return make_error(ErrorCode::kIo, fmt::format("mkfs.ext4 failed ({}): {}", how, said.substr(0, 300)));
  }
  fs::remove(log);
  if (progress) progress(expected, expected);
  return {};
}

Status write_new_file(int dir_fd, const std::string& name, const std::string& text, mode_t mode) {
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd.valid()) return errno_error("create " + name);
  SNAPVM_CHECK_OK(pwrite_all(fd.get(), {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, 0));
  if (::fchmod(fd.get(), mode) != 0) return errno_error("chmod " + name);
  return {};
}

// The image `ref` names: a directory as it is, or a tarball unpacked into
// the scratch directory by the same careful hands as a layer (paths
// resolved inside it, links never leading out, sizes charged), then read
// as a directory.
Result<ImageSource> read_source(const SourceRef& ref, const ImageChoice& choice, const ScratchDir& scratch,
                                const ImportOptions& o) {
  const std::string& path = ref.path;
  // O_NONBLOCK: a FIFO named as the source is refused, not waited on.
  auto fd = open_file(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (!fd) return tl::unexpected(fd.error());
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return errno_error(path);
  using Kind = SourceRef::Kind;
  if (S_ISDIR(st.st_mode)) {
    if (ref.kind == Kind::kOciLayout) return read_oci_layout(fd->get(), path, choice);
    if (ref.kind == Kind::kDockerArchive) return read_docker_archive(fd->get(), path, choice);
    return read_image_dir(fd->get(), path, choice);
  }
  if (!S_ISREG(st.st_mode)) {
    return make_error(ErrorCode::kInvalidArgument, fmt::format("{}: not a directory or a tarball", path));
  }
  if (ref.kind == Kind::kOciLayout) {
    return make_error(ErrorCode::kInvalidArgument, "{}: oci: names a layout directory, and this is a file ({})", path,
                      "a docker-archive tarball is imported as docker-archive:PATH");
  }
  auto unpacked = SNAPVM_TRY(make_dir(scratch.fd(), "archive", 0700, scratch.path() + "/archive"));
  if (o.progress) o.progress("unpacking " + path);
  uint64_t unpack_budget = o.max_bytes;
  SNAPVM_CHECK_OK(apply_layer(fd->get(), path, unpacked.get(), LayerLimits{}, unpack_budget,
                              step_progress(o, "unpacking")));
  if (ref.kind == Kind::kDockerArchive) return read_docker_archive(unpacked.get(), path, choice);
  return read_image_dir(unpacked.get(), path, choice);
}

Result<ImportResult> import_into(int store_fd, const SourceRef& source, const std::string& name,
                                 const ImportOptions& o) {
  remove_stale_scratch(store_fd);
  auto scratch = SNAPVM_TRY(ScratchDir::create(store_fd, o.store, name));
  const ImageChoice choice{source.tag, o.allow_other_arch, name};
  const ImageSource src = SNAPVM_TRY(read_source(source, choice, scratch, o));

  ImportResult result;
  result.name = name;
  result.digest = src.digest;
  result.layers = src.layers.size();
  const fs::path final_dir = fs::path(o.store) / name;
  result.rootfs = (final_dir / "rootfs.ext4").string();
  if (auto existing = find_image(o.store, name);
      existing && existing->layers_verified && existing->digest == src.digest) {
    result.reused = true;
    result.rootfs_bytes = existing->rootfs_bytes;
    return result;
  }
  uint64_t budget = o.max_bytes, entries = 0;
  const uint64_t bytes = SNAPVM_TRY(apply_all(src.layers, scratch.fd(), scratch.path(), budget, o, entries));
  SNAPVM_CHECK_OK(check_interrupt());
  result.content_bytes = bytes;
  if (o.progress) {
    o.progress(fmt::format("building rootfs.ext4 from {:.1f} MiB in {} entries", bytes / 1048576.0, entries));
  }
  const mode_t dir_mode = o.shared ? 0755 : 0700, file_mode = o.shared ? 0644 : 0600;
  auto out = SNAPVM_TRY(make_dir(scratch.fd(), "out", 0700, scratch.path() + "/out"));
  const fs::path out_path = fs::path(scratch.path()) / "out";
  SNAPVM_CHECK_OK(make_ext4(fs::path(scratch.path()) / "rootfs", out_path / "rootfs.ext4", bytes, entries,
                            step_progress(o, "rootfs.ext4")));
  if (::fchmodat(out.get(), "rootfs.ext4", file_mode, 0) != 0) return errno_error("chmod rootfs.ext4");
  result.rootfs_bytes = fs::file_size(out_path / "rootfs.ext4");
  json meta = {{"name", name},
               {"digest", src.digest},
               {"architecture", src.facts.architecture},
               {"os", src.facts.os},
               {"created", src.facts.created},
               {"layers", src.layers.size()},
               {"layer_digests", src.layer_digests},
               {"layers_verified", true},
               {"content_bytes", bytes},
               {"rootfs_bytes", result.rootfs_bytes},
               {"config", run_config_json(src.config)}};
  SNAPVM_CHECK_OK(write_new_file(out.get(), "image.json", meta.dump(2) + "\n", file_mode));
  if (::fchmod(out.get(), dir_mode) != 0) return errno_error("chmod " + out_path.string());
  SNAPVM_CHECK_OK(check_interrupt());
  // Into place: the old image (if any) moves aside first, then goes.
  std::error_code ec;
  const fs::path old = fs::path(scratch.path()) / "previous";
  if (fs::exists(final_dir)) fs::rename(final_dir, old);
  fs::rename(out_path, final_dir, ec);
  if (ec) {
    if (fs::exists(old)) fs::rename(old, final_dir);
    return make_error(ErrorCode::kIo, fmt::format("move the image into {}: {}", final_dir.string(), ec.message()));
  }
  return result;
}

}  // namespace

Result<UniqueFd> open_store(const std::string& store, bool shared) {
  std::error_code ec;
  const fs::path dir(store);
  if (!fs::exists(dir, ec)) {
    if (dir.has_parent_path()) fs::create_directories(dir.parent_path(), ec);
    if (::mkdir(dir.c_str(), 0700) == 0) ::chmod(dir.c_str(), shared ? 0755 : 0700);
  }
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return errno_error("image store " + store);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_error("image store " + store);
  // Another user who could rename entries here could swap what an import
  // builds, or what a removal deletes.
  if ((st.st_uid != 0 && st.st_uid != ::geteuid()) || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "image store {}: other users can change it (owner uid {}, mode {:o}); use a store only its "
                      "owner can write",
                      store, st.st_uid, st.st_mode & 07777);
  }
  return fd;
}

Result<ImportResult> import_image(const std::string& source, const std::string& name, const ImportOptions& o) {
  const SourceRef ref = SNAPVM_TRY(parse_source(source));
  std::string chosen_name = name;
  if (chosen_name.empty()) chosen_name = SNAPVM_TRY(default_image_name(ref));
  SNAPVM_CHECK_OK(check_image_name(chosen_name));
  // Before the scratch directory exists and until it is gone again.
  InterruptWatch watch;
  auto store = SNAPVM_TRY(open_store(o.store, o.shared));
  return import_into(store.get(), ref, chosen_name, o);
}

}  // namespace snapvm::image
