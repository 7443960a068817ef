#include "firecracker/api_paths.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

namespace snapvm::firecracker {
namespace {

std::string_view type_name(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

}  // namespace

Result<UniqueFd> open_api_input(const std::string& path, ApiInput kind, bool writable, std::string_view what) {
  // O_NONBLOCK: opening a FIFO for reading would wait for a writer.
  int fd = ::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return errno_error(fmt::format("{} {}", what, path));
  UniqueFd file(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error(fmt::format("{} {}", what, path));
  const bool fits = S_ISREG(st.st_mode) || (kind == ApiInput::kDrive && S_ISBLK(st.st_mode));
  if (!fits) {
    return make_error(ErrorCode::kInvalidArgument, "{} {} is {}: give a {}", what, path, type_name(st.st_mode),
                      kind == ApiInput::kDrive ? "regular file or a block device" : "regular file");
  }
  // Regular files and block devices ignore O_NONBLOCK today; clear it so
  // the descriptor means what its users expect whatever the kernel does.
  if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
    return errno_error(fmt::format("{} {}", what, path));
  }
  return file;
}

Result<UniqueFd> open_api_sink(const std::string& path, std::string_view what) {
  const int flags = O_RDWR | O_APPEND | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC;
  int fd = -1;
  // Twice at most: a file that appears between the two opens is opened as
  // any existing one (a link that appears is refused by the second open).
  for (int attempt = 0; attempt < 2 && fd < 0; ++attempt) {
    fd = ::open(path.c_str(), flags);
    if (fd >= 0 || errno != ENOENT) break;
    // O_EXCL: a link here, dangling or not, fails with EEXIST instead of
    // creating its target.
    fd = ::open(path.c_str(), flags | O_CREAT | O_EXCL, 0600);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0 && (errno == ELOOP || errno == EEXIST)) {
    return make_error(ErrorCode::kInvalidArgument, "{} {} is a symbolic link: give the file itself", what, path);
  }
  if (fd < 0) return errno_error(fmt::format("{} {}", what, path));
  UniqueFd file(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error(fmt::format("{} {}", what, path));
  if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) {
    return make_error(ErrorCode::kInvalidArgument, "{} {} is {}: give a file or a FIFO", what, path,
                      type_name(st.st_mode));
  }
  return file;
}

}  // namespace snapvm::firecracker
