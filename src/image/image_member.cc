#include "image/image_member.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "base/file_io.h"

namespace snapvm::image {
namespace {

bool climbs_or_absolute(const std::string& p) {
  if (p.empty() || p[0] == '/') return true;
  for (size_t at = 0; at <= p.size();) {
    size_t slash = p.find('/', at);
    if (slash == std::string::npos) slash = p.size();
    if (slash - at == 2 && p.compare(at, 2, "..") == 0) return true;
    at = slash + 1;
  }
  return false;
}

}  // namespace

Result<UniqueFd> open_member(int dir_fd, const std::string& path, MemberLinks links, const std::string& what) {
  if (path.size() > 4096 || climbs_or_absolute(path)) {
    return make_error(ErrorCode::kDataLoss, "{}: path `{}` leaves the image", what, path.substr(0, 200));
  }
  open_how how{};
  // O_NONBLOCK: opening a FIFO returns at once (and is refused below)
  // instead of waiting for a writer that never comes.
  how.flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  if (links == MemberLinks::kRefused) how.resolve |= RESOLVE_NO_SYMLINKS;
  UniqueFd fd(static_cast<int>(::syscall(SYS_openat2, dir_fd, path.c_str(), &how, sizeof how)));
  if (!fd.valid()) {
    if (errno == ELOOP && links == MemberLinks::kRefused) {
      return make_error(ErrorCode::kDataLoss, "{}: `{}` is a symbolic link or lies under one; refused",
                        what, path.substr(0, 200));
    }
    if (errno == ENOENT || errno == ENOTDIR) {
      return make_error(ErrorCode::kDataLoss, "{}: `{}` is not in the image", what, path.substr(0, 200));
    }
    return errno_error(fmt::format("{}: open {}", what, path.substr(0, 200)));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_error(fmt::format("{}: stat {}", what, path.substr(0, 200)));
  if (!S_ISREG(st.st_mode)) {
    return make_error(ErrorCode::kDataLoss, "{}: `{}` is not a regular file", what, path.substr(0, 200));
  }
  return fd;
}

Result<std::string> read_member(int fd, uint64_t max_bytes, const std::string& what) {
  // One size check and one read of that size: a file that grows after the
  // check is not read further.
  auto size = file_size(fd);
  if (!size) return tl::unexpected(std::move(size.error()).context(what));
  if (*size > max_bytes) {
    return make_error(ErrorCode::kDataLoss, "{}: {} bytes, more than image metadata may be ({})", what, *size,
                      max_bytes);
  }
  std::string text(static_cast<size_t>(*size), '\0');
  auto read = pread_exact(fd, {reinterpret_cast<uint8_t*>(text.data()), text.size()}, 0);
  if (!read) return tl::unexpected(std::move(read.error()).context(what));
  return text;
}

}  // namespace snapvm::image
