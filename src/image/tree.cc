#include "image/tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "base/unique_fd.h"

namespace snapvm::image {
namespace {

// A directory being emptied: its name in its parent, and the
// subdirectories found in it that still wait to be emptied and removed.
struct Level {
  std::string name;
  std::vector<std::string> pending;
};

// Removes every non-directory in the directory `fd` and returns the names
// of its subdirectories.
Result<std::vector<std::string>> unlink_files(int fd, const std::string& name) {
  std::vector<std::string> subdirs;
  for (const auto& child : SNAPVM_TRY(list_names(fd, name))) {
    if (::unlinkat(fd, child.c_str(), 0) == 0 || errno == ENOENT) continue;
    if (errno != EISDIR && errno != EPERM) return errno_error("remove " + name + "/" + child);
    subdirs.push_back(child);
  }
  return subdirs;
}

}  // namespace

Result<std::vector<std::string>> list_names(int dir_fd, const std::string& what) {
  const int reader = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  std::unique_ptr<DIR, int (*)(DIR*)> dir(reader < 0 ? nullptr : ::fdopendir(reader), ::closedir);
  if (!dir) {
    if (reader >= 0) ::close(reader);
    return errno_error("read " + what);
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(dir.get())) {
    std::string child = e->d_name;
    if (child != "." && child != "..") names.push_back(std::move(child));
  }
  return names;
}

Status remove_tree(int dir_fd, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return make_error(ErrorCode::kInvalidArgument, "remove `{}`: not a name in its directory", name);
  }
  if (::unlinkat(dir_fd, name.c_str(), 0) == 0 || errno == ENOENT) return {};
  if (errno != EISDIR && errno != EPERM) return errno_error("remove " + name);

  // Only the directory being emptied is open: its parent is reopened
  // through ".." on the way back up (inside a tree nothing else changes).
  UniqueFd current;
  std::vector<Level> stack;
  auto enter = [&](int parent, const std::string& child) -> Status {
    UniqueFd fd(::openat(parent, child.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) return errno_error("open " + child);
    auto subdirs = unlink_files(fd.get(), child);
    if (!subdirs) return tl::unexpected(subdirs.error());
    current = std::move(fd);
    stack.push_back({child, std::move(*subdirs)});
    return {};
  };
  SNAPVM_CHECK_OK(enter(dir_fd, name));
  while (!stack.empty()) {
    if (!stack.back().pending.empty()) {
      const std::string child = std::move(stack.back().pending.back());
      stack.back().pending.pop_back();
      SNAPVM_CHECK_OK(enter(current.get(), child));
      continue;
    }
    const std::string done = std::move(stack.back().name);
    stack.pop_back();
    int parent = dir_fd;
    if (!stack.empty()) {
      current.reset(::openat(current.get(), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!current.valid()) return errno_error("open the directory above " + done);
      parent = current.get();
    }
    if (::unlinkat(parent, done.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) return errno_error("remove " + done);
  }
  return {};
}

}  // namespace snapvm::image
