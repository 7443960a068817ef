#include "image/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fmt/ranges.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <dirent.h>

#include <cerrno>
#include <optional>
#include <cstring>
#include <memory>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "base/file_io.h"
#include "base/unique_fd.h"

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

// A directory's entries (not . and ..) and an fd to act on them; the
// directory `name` of `dir_fd` is opened without following a symlink.
struct Listing {
  UniqueFd fd;
  std::vector<std::string> names;
};
Result<Listing> list_dir(int dir_fd, const std::string& name) {
  Listing l{UniqueFd(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)), {}};
  if (l.fd.get() < 0) return errno_error("open " + name);
  const int reader = ::dup(l.fd.get());  // fdopendir takes it over
  std::unique_ptr<DIR, int (*)(DIR*)> dir(reader < 0 ? nullptr : ::fdopendir(reader), ::closedir);
  if (!dir) {
    if (reader >= 0) ::close(reader);
    return errno_error("read " + name);
  }
  while (dirent* e = ::readdir(dir.get())) {
    std::string child = e->d_name;
    if (child != "." && child != "..") l.names.push_back(std::move(child));
  }
  return l;
}

// Removes `name` in `dir_fd`, a directory with everything in it; nothing
// there is fine.
Status remove_tree(int dir_fd, const std::string& name) {
  if (::unlinkat(dir_fd, name.c_str(), 0) == 0 || errno == ENOENT) return {};
  if (errno != EISDIR && errno != EPERM) return errno_error("remove " + name);
  auto listing = list_dir(dir_fd, name);
  if (!listing) return tl::unexpected(listing.error());
  for (const auto& child : listing->names) SNAPVM_CHECK_OK(remove_tree(listing->fd.get(), child));
  if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) return errno_error("remove " + name);
  return {};
}

class Applier {
 public:
  Applier(const std::string& layer, int root_fd, const LayerLimits& limits, uint64_t& budget)
      : layer_(layer), root_fd_(root_fd), limits_(limits), budget_(budget), as_root_(::geteuid() == 0) {}

  Result<LayerStats> run() {
    std::unique_ptr<archive, int (*)(archive*)> a(archive_read_new(), archive_read_free);
    archive_read_support_filter_all(a.get());
    archive_read_support_format_tar(a.get());
    if (archive_read_open_filename(a.get(), layer_.c_str(), 1 << 16) != ARCHIVE_OK) {
      return refuse("cannot read it as a tar ({})", archive_error_string(a.get()));
    }
    for (;;) {
      archive_entry* e = nullptr;
      int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return refuse("corrupt ({})", archive_error_string(a.get()));
      if (++stats_.entries > limits_.max_entries) return refuse("more than {} entries", limits_.max_entries);
      SNAPVM_CHECK_OK(apply(a.get(), e));
    }
    return stats_;
  }

 private:
  template <typename... Args>
  tl::unexpected<Error> refuse(fmt::format_string<Args...> f, Args&&... args) {
    return make_error(ErrorCode::kDataLoss,
                      fmt::format("layer {}: {}", layer_, fmt::format(f, std::forward<Args>(args)...)));
  }

  // The directory that holds `parts[0..n)`, made (0755, root's) if absent.
  Result<UniqueFd> open_dir(const std::vector<std::string>& parts, size_t n) {
    UniqueFd dir(open_in_root(root_fd_, "", O_PATH | O_DIRECTORY));
    if (dir.get() < 0) return errno_error("open the root");
    for (size_t i = 0; i < n; ++i) {
      // Each prefix from the image's root: a symlink on the way (lib ->
      // /usr/lib) means the image's /usr/lib, never the host's.
      const std::string prefix = join(parts, i + 1);
      int next = open_in_root(root_fd_, prefix, O_PATH | O_DIRECTORY);
      if (next < 0 && errno == ENOENT) {
        if (::mkdirat(dir.get(), parts[i].c_str(), 0755) != 0 && errno != EEXIST) {
          return errno_error("make directory " + prefix);
        }
        next = open_in_root(root_fd_, prefix, O_PATH | O_DIRECTORY);
      }
      if (next < 0) return errno_error("open directory " + join(parts, i + 1));
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
    if (parts->empty()) return {};  // the root itself
    const std::string path = join(*parts, parts->size());
    const std::string leaf = parts->back();
    auto dir = open_dir(*parts, parts->size() - 1);
    if (!dir) return tl::unexpected(std::move(dir.error()).context("layer " + layer_));
    const int dir_fd = dir->get();

    if (leaf == kOpaqueMarker) {  // lower layers' children of this directory go
      ++stats_.whiteouts;
      return empty_directory(dir_fd, join(*parts, parts->size() - 1));
    }
    if (leaf.starts_with(kWhiteoutPrefix)) {
      ++stats_.whiteouts;
      return remove_tree(dir_fd, leaf.substr(kWhiteoutPrefix.size()));
    }
    written_.insert(path);

    if (const char* target = archive_entry_hardlink(e); target != nullptr) {
      auto tparts = split_path(target);
      if (!tparts || tparts->empty()) return refuse("hard link `{}` to `{}` outside the root", name, target);
      auto tdir = open_dir(*tparts, tparts->size() - 1);
      if (!tdir) return tl::unexpected(std::move(tdir.error()).context("layer " + layer_));
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
        if (::mkdirat(dir_fd, leaf.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("mkdir " + path);
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

  Status empty_directory(int dir_fd, const std::string& dir_path) {
    auto listing = list_dir(dir_fd, ".");
    if (!listing) return tl::unexpected(std::move(listing.error()).context(dir_path));
    for (const auto& child : listing->names) {
      // What this layer itself put here before the marker stays.
      if (written_.count(dir_path.empty() ? child : dir_path + "/" + child) != 0) continue;
      SNAPVM_CHECK_OK(remove_tree(listing->fd.get(), child));
    }
    return {};
  }

  Status copy_data(archive* a, int out, std::string_view name) {
    const void* block;
    size_t size;
    la_int64_t offset;
    for (;;) {
      int r = archive_read_data_block(a, &block, &size, &offset);
      if (r == ARCHIVE_EOF) return {};
      if (r != ARCHIVE_OK) return refuse("`{}`: corrupt data ({})", name, archive_error_string(a));
      if (offset < 0 || size > budget_) return refuse("`{}` is larger than the image may be", name);
      auto written = pwrite_all(out, {static_cast<const uint8_t*>(block), size}, static_cast<uint64_t>(offset));
      if (!written) return tl::unexpected(std::move(written.error()).context(fmt::format("write {}", name)));
      budget_ -= size;
      stats_.bytes += size;
    }
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

  std::string layer_;
  int root_fd_;
  LayerLimits limits_;
  uint64_t& budget_;
  bool as_root_;
  LayerStats stats_;
  std::unordered_set<std::string> written_;  // paths this layer created, for opaque markers
};

}  // namespace

Result<LayerStats> apply_layer(const std::string& layer_path, int root_fd, const LayerLimits& limits,
                               uint64_t& byte_budget) {
  return Applier(layer_path, root_fd, limits, byte_budget).run();
}

}  // namespace snapvm::image
