#include "image/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <fmt/ranges.h>

#include "base/file_io.h"
#include "base/unique_fd.h"
#include "image/interrupt.h"
#include "image/layer_archive.h"
#include "image/tree.h"

namespace snapvm::image {
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

// openat2 with the root as `/`: absolute symlinks and `..` stay inside.
int open_in_root(int root_fd, const std::string& path, uint64_t flags) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, root_fd, path.empty() ? "." : path.c_str(), &how, sizeof how));
}

// "a/./b/" -> {"a", "b"}; nullopt if a component is "..".
std::optional<std::vector<std::string>> split_path(std::string_view p) {
  std::vector<std::string> parts;
  size_t at = 0;
  while (at <= p.size()) {
    size_t slash = p.find('/', at);
    if (slash == std::string_view::npos) slash = p.size();
    std::string_view part = p.substr(at, slash - at);
    if (part == "..") return std::nullopt;
    if (!part.empty() && part != ".") parts.emplace_back(part);
    at = slash + 1;
  }
  return parts;
}

std::string join(const std::vector<std::string>& parts, size_t count) {
  return fmt::format("{}", fmt::join(parts.begin(), parts.begin() + static_cast<ptrdiff_t>(count), "/"));
}

Result<ino_t> inode_of(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("stat " + what);
  return st.st_ino;
}

// A name this layer gave an inode: (its directory's inode, the name).
struct Written {
  ino_t dir;
  std::string leaf;
  bool operator==(const Written&) const = default;
};
struct WrittenHash {
  size_t operator()(const Written& w) const { return std::hash<std::string>()(w.leaf) ^ (w.dir * 0x9e3779b97f4a7c15ull); }
};

class Applier {
 public:
  Applier(int layer_fd, const std::string& layer, int root_fd, const LayerLimits& limits, uint64_t& budget,
          const ProgressFn& progress)
      : layer_fd_(layer_fd), layer_(layer), root_fd_(root_fd), limits_(limits), budget_(budget),
        as_root_(::geteuid() == 0), progress_(progress) {}

  Result<LayerStats> run() {
    root_ino_ = SNAPVM_TRY(inode_of(root_fd_, "the root"));
    struct stat st {};
    if (progress_ && ::fstat(layer_fd_, &st) == 0) layer_bytes_ = static_cast<uint64_t>(st.st_size);
    auto a = open_tar(layer_fd_, "layer " + layer_);
    if (!a) return tl::unexpected(a.error());
    for (;;) {
      SNAPVM_CHECK_OK(check_interrupt());
      archive_entry* e = nullptr;
      int r = archive_read_next_header(a->get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return refuse("corrupt ({})", archive_error_string(a->get()));
      if (++stats_.entries > limits_.max_entries) return refuse("more than {} entries", limits_.max_entries);
      SNAPVM_CHECK_OK(apply(a->get(), e));
      report(a->get());
    }
    if (progress_) progress_(layer_bytes_, layer_bytes_);
    return stats_;
  }

 private:
  template <typename... Args>
  tl::unexpected<Error> refuse(fmt::format_string<Args...> f, Args&&... args) {
    return make_error(ErrorCode::kDataLoss,
                      fmt::format("layer {}: {}", layer_, fmt::format(f, std::forward<Args>(args)...)));
  }

  Status charge(uint64_t cost, std::string_view name) {
    if (cost > budget_) {
      return refuse("at `{}`, its files, entries and directory levels add up to more than the image may hold "
                    "(--max-size)", name.substr(0, 200));
    }
    budget_ -= cost;
    return {};
  }

  // How many levels below the root the directory `fd` lies. Known for
  // what this layer met before; otherwise found by climbing "..", which
  // stops at the first directory already known, so each directory is
  // climbed through once.
  Result<uint64_t> depth_of(int fd) {
    std::vector<ino_t> climbed;
    UniqueFd up;
    int at = fd;
    for (;;) {
      const ino_t ino = SNAPVM_TRY(inode_of(at, "a directory"));
      uint64_t depth = 0;
      if (auto known = depth_.find(ino); known != depth_.end()) {
        depth = known->second;
      } else if (ino != root_ino_) {
        climbed.push_back(ino);
        if (climbed.size() > limits_.max_depth + 1) return refuse("directories nest deeper than {} levels", limits_.max_depth);
        up.reset(::openat(at, "..", O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!up.valid()) return errno_error("open a directory's parent");
        at = up.get();
        continue;
      }
      for (auto it = climbed.rbegin(); it != climbed.rend(); ++it) depth_[*it] = ++depth;
      return depth;
    }
  }

  // A new directory `name` in `parent_fd`, if the tree may grow that deep.
  Status make_dir(int parent_fd, const std::string& name, mode_t mode, std::string_view path) {
    const uint64_t depth = SNAPVM_TRY(depth_of(parent_fd)) + 1;
    if (depth > limits_.max_depth) {
      return refuse("`{}` nests directories deeper than {} levels", path.substr(0, 200), limits_.max_depth);
    }
    if (::mkdirat(parent_fd, name.c_str(), mode) != 0) {
      if (errno == EEXIST) return {};
      return errno_error(fmt::format("make directory {}", path.substr(0, 200)));
    }
    // Recorded now: the inode may be one a removed directory had, deeper.
    struct stat st {};
    if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno_error("stat " + name);
    depth_[st.st_ino] = depth;
    return {};
  }

  // The directory that holds `parts[0..n)` (made, 0755, root's, if absent
  // and `create`). One component at a time from its parent, so a path
  // costs its depth, not its depth squared; a symlink met on the way
  // (lib -> /usr/lib) is resolved from the image's root, as the image
  // would see it, never the host's.
  Result<UniqueFd> open_dir(const std::vector<std::string>& parts, size_t n, bool create) {
    UniqueFd dir(::fcntl(root_fd_, F_DUPFD_CLOEXEC, 0));
    if (!dir.valid()) return errno_error("open the root");
    for (size_t i = 0; i < n; ++i) {
      int next = ::openat(dir.get(), parts[i].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0 && errno == ENOENT && create) {
        SNAPVM_CHECK_OK(make_dir(dir.get(), parts[i], 0755, join(parts, i + 1)));
        next = ::openat(dir.get(), parts[i].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      }
      if (next < 0 && (errno == ENOTDIR || errno == ELOOP)) {  // a symlink, or not a directory at all
        next = open_in_root(root_fd_, join(parts, i + 1), O_PATH | O_DIRECTORY);
      }
      if (next < 0) return errno_error("open directory " + join(parts, i + 1).substr(0, 200));
      dir.reset(next);
    }
    return dir;
  }

  Status apply(archive* a, archive_entry* e) {
    const char* raw = archive_entry_pathname(e);
    std::string_view name = raw ? raw : "";
    if (name.size() > limits_.max_path_bytes) return refuse("a path of {} bytes", name.size());
    auto parts = split_path(name);
    if (!parts) return refuse("`{}` climbs out of the root with ..", name);
    if (parts->size() > limits_.max_depth + 1) {
      return refuse("`{}` lies deeper than {} levels", name.substr(0, 200), limits_.max_depth);
    }
    SNAPVM_CHECK_OK(charge(kCostPerLevel * std::max<size_t>(parts->size(), 1), name));
    if (parts->empty()) return {};  // the root itself
    const std::string path = join(*parts, parts->size());
    const std::string leaf = parts->back();
    auto dir = open_dir(*parts, parts->size() - 1, /*create=*/true);
    if (!dir) return tl::unexpected(std::move(dir.error()).context("layer " + layer_));
    const int dir_fd = dir->get();
    const ino_t dir_ino = SNAPVM_TRY(inode_of(dir_fd, path));
    SNAPVM_CHECK_OK(charge(kCostPerSibling * siblings_[dir_ino]++, name));

    if (leaf == kOpaqueMarker) {  // lower layers' children of this directory go
      ++stats_.whiteouts;
      if (!opaque_.insert(dir_ino).second) return {};  // once is enough: a repeat finds only this layer's
      return empty_directory(dir_fd, dir_ino, join(*parts, parts->size() - 1));
    }
    if (leaf.starts_with(kWhiteoutPrefix)) {
      ++stats_.whiteouts;
      const std::string target = leaf.substr(kWhiteoutPrefix.size());
      // `.wh..` and `.wh...` would remove the directory itself or its
      // parent: above the root, that is the importer's own scratch files.
      if (target.empty() || target == "." || target == "..") return refuse("whiteout `{}` names no entry", name);
      return remove_tree(dir_fd, target);
    }
    written_.insert({dir_ino, leaf});

    if (const char* target = archive_entry_hardlink(e); target != nullptr) {
      auto tparts = split_path(target);
      if (!tparts || tparts->empty()) return refuse("hard link `{}` to `{}` outside the root", name, target);
      auto tdir = open_dir(*tparts, tparts->size() - 1, /*create=*/false);
      if (!tdir) return refuse("hard link `{}` to `{}`: {}", name, target, tdir.error().describe());
      SNAPVM_CHECK_OK(remove_tree(dir_fd, leaf));
      if (::linkat(tdir->get(), tparts->back().c_str(), dir_fd, leaf.c_str(), 0) != 0) {
        return refuse("hard link `{}` to `{}`: {}", name, target, std::strerror(errno));
      }
      ++stats_.hardlinks;
      return {};
    }
    const mode_t type = archive_entry_filetype(e);
    const mode_t mode = archive_entry_perm(e);
    switch (type) {
      case AE_IFDIR: {
        struct stat st {};
        if (::fstatat(dir_fd, leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
          SNAPVM_CHECK_OK(remove_tree(dir_fd, leaf));
        }
        SNAPVM_CHECK_OK(make_dir(dir_fd, leaf, 0700, path));
        ++stats_.dirs;
        return set_attributes(dir_fd, leaf, e, mode);
      }
      case AE_IFREG: {
        const int64_t size = archive_entry_size(e);
        if (size < 0 || static_cast<uint64_t>(size) > budget_) {
          return refuse("`{}` holds {} bytes, more than the {} left to the image", name, size, budget_);
        }
        SNAPVM_CHECK_OK(remove_tree(dir_fd, leaf));
        UniqueFd out(::openat(dir_fd, leaf.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (out.get() < 0) return errno_error("create " + path);
        SNAPVM_CHECK_OK(copy_data(a, out.get(), name));
        ++stats_.files;
        return set_attributes(dir_fd, leaf, e, mode);
      }
      case AE_IFLNK: {
        const char* target = archive_entry_symlink(e);
        if (target == nullptr || std::strlen(target) > limits_.max_path_bytes) {
          return refuse("symlink `{}` with no or an overlong target", name);
        }
        SNAPVM_CHECK_OK(remove_tree(dir_fd, leaf));
        // Stored as written: it is resolved inside the root when used.
        if (::symlinkat(target, dir_fd, leaf.c_str()) != 0) return errno_error("symlink " + path);
        ++stats_.symlinks;
        if (as_root_ && ::fchownat(dir_fd, leaf.c_str(), static_cast<uid_t>(archive_entry_uid(e)),
                                   static_cast<gid_t>(archive_entry_gid(e)), AT_SYMLINK_NOFOLLOW) != 0) {
          return errno_error("chown " + path);
        }
        return {};
      }
      case AE_IFIFO:
        SNAPVM_CHECK_OK(remove_tree(dir_fd, leaf));
        if (::mknodat(dir_fd, leaf.c_str(), S_IFIFO | 0600, 0) != 0) return errno_error("mkfifo " + path);
        return set_attributes(dir_fd, leaf, e, mode);
      case AE_IFCHR:
      case AE_IFBLK:
        return refuse("`{}` is a device node; an image may not carry devices", name);
      default:
        return {};  // sockets: nothing a root filesystem needs
    }
  }

  Status empty_directory(int dir_fd, ino_t dir_ino, const std::string& dir_path) {
    const auto names = SNAPVM_TRY(list_names(dir_fd, dir_path));
    for (const auto& child : names) {
      // What this layer itself put here before the marker stays.
      if (written_.count({dir_ino, child}) != 0) continue;
      SNAPVM_CHECK_OK(remove_tree(dir_fd, child));
    }
    return {};
  }

  Status copy_data(archive* a, int out, std::string_view name) {
    const void* block;
    size_t size;
    la_int64_t offset;
    for (;;) {
      SNAPVM_CHECK_OK(check_interrupt());
      int r = archive_read_data_block(a, &block, &size, &offset);
      if (r == ARCHIVE_EOF) return {};
      if (r != ARCHIVE_OK) return refuse("`{}`: corrupt data ({})", name, archive_error_string(a));
      if (offset < 0 || size > budget_) return refuse("`{}` is larger than the image may be", name);
      auto written = pwrite_all(out, {static_cast<const uint8_t*>(block), size}, static_cast<uint64_t>(offset));
      if (!written) return tl::unexpected(std::move(written.error()).context(fmt::format("write {}", name)));
      budget_ -= size;
      stats_.bytes += size;
      report(a);
    }
  }

  // How far into the layer file libarchive has read (its raw bytes, before
  // decompression: what the file's size is a total of). It reads ahead, so
  // all of it is read before the last entries are written: the total is
  // reported once, when the layer is done.
  void report(archive* a) {
    if (!progress_ || layer_bytes_ == 0) return;
    const la_int64_t read = archive_filter_bytes(a, -1);
    if (read > 0) progress_(std::min(static_cast<uint64_t>(read), layer_bytes_ - 1), layer_bytes_);
  }

  Status set_attributes(int dir_fd, const std::string& leaf, archive_entry* e, mode_t mode) {
    // Owner before mode: chown clears set-user-ID bits.
    if (as_root_ && ::fchownat(dir_fd, leaf.c_str(), static_cast<uid_t>(archive_entry_uid(e)),
                               static_cast<gid_t>(archive_entry_gid(e)), AT_SYMLINK_NOFOLLOW) != 0) {
      return errno_error("chown " + leaf);
    }
    if (::fchmodat(dir_fd, leaf.c_str(), mode & 07777, 0) != 0) return errno_error("chmod " + leaf);
    timespec times[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                         {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
    ::utimensat(dir_fd, leaf.c_str(), times, AT_SYMLINK_NOFOLLOW);
    return {};
  }

  int layer_fd_;
  std::string layer_;
  int root_fd_;
  LayerLimits limits_;
  uint64_t& budget_;
  bool as_root_;
  const ProgressFn& progress_;
  uint64_t layer_bytes_ = 0;
  ino_t root_ino_ = 0;
  LayerStats stats_;
  std::unordered_set<Written, WrittenHash> written_;  // names this layer gave, for opaque markers
  std::unordered_set<ino_t> opaque_;                 // directories this layer's markers emptied
  std::unordered_map<ino_t, uint64_t> siblings_;      // entries this layer put in each directory
  std::unordered_map<ino_t, uint64_t> depth_;         // levels below the root, of directories met
};

}  // namespace

Result<LayerStats> apply_layer(int layer_fd, const std::string& name, int root_fd, const LayerLimits& limits,
                               uint64_t& byte_budget, const ProgressFn& progress) {
  return Applier(layer_fd, name, root_fd, limits, byte_budget, progress).run();
}

Result<LayerStats> apply_layer(const std::string& layer_path, int root_fd, const LayerLimits& limits,
                               uint64_t& byte_budget) {
  // O_NONBLOCK: a FIFO in the layer's place is refused, never waited on.
  auto fd = open_file(layer_path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (!fd) return tl::unexpected(fd.error());
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return errno_error("stat " + layer_path);
  if (!S_ISREG(st.st_mode)) {
    return make_error(ErrorCode::kInvalidArgument, "layer {}: not a regular file", layer_path);
  }
  return apply_layer(fd->get(), layer_path, root_fd, limits, byte_budget);
}

}  // namespace snapvm::image
