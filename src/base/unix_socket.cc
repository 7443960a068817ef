#include "base/unix_socket.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace snapvm {
namespace {

Result<sockaddr_un> address_of(const std::string& path, const char* what) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return make_error(ErrorCode::kInvalidArgument, "{} path '{}' must be 1 to {} bytes", what, path,
                      sizeof addr.sun_path - 1);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

}  // namespace

Result<UniqueFd> connect_unix(const std::string& path) {
  sockaddr_un addr = SNAPVM_TRY(address_of(path, "socket"));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_error("socket(AF_UNIX)");
  UniqueFd owned(fd);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return errno_error(fmt::format("connect to {}", path));
  }
  return owned;
}

Result<UniqueFd> listen_unix(const std::string& path, int backlog, mode_t mode, const char* what) {
  sockaddr_un addr = SNAPVM_TRY(address_of(path, what));
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return make_error(ErrorCode::kFailedPrecondition, "{} {} exists and is not a socket", what, path);
    }
    if (connect_unix(path)) {
      return make_error(ErrorCode::kFailedPrecondition, "{} {} is in use by a running process (another VM?)", what, path);
    }
    ::unlink(path.c_str());  // left by a process that is gone
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return errno_error("socket(AF_UNIX)");
  UniqueFd owned(fd);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return errno_error(fmt::format("{} {}", what, path));
  }
  // Permissions before listen(): until then nobody can connect, so there is
  // no moment where others may.
  if (::chmod(path.c_str(), mode) != 0 || ::listen(fd, backlog) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    errno = err;
    return errno_error(fmt::format("{} {}", what, path));
  }
  return owned;
}

}  // namespace snapvm
