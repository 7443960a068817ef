#include "base/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace snapvm {

Result<UniqueFd> open_file(const std::string& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return errno_error(fmt::format("open {}", path));
  return UniqueFd(fd);
}

Result<UniqueFd> open_regular_file(const std::string& path, int flags, std::string_view what) {
  int fd = ::open(path.c_str(), flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return errno_error(fmt::format("{} {}", what, path));
  UniqueFd owned(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error(fmt::format("{} {}", what, path));
  if (!S_ISREG(st.st_mode)) {
    return make_error(ErrorCode::kInvalidArgument, "{} {}: not a regular file", what, path);
  }
  if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
    return errno_error(fmt::format("{} {}", what, path));
  }
  return owned;
}

Status pread_exact(int fd, std::span<uint8_t> buf, uint64_t offset) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(fmt::format("pread {} bytes at offset {:#x}", buf.size(), offset));
    }
    if (n == 0) {
      return make_error(ErrorCode::kDataLoss, "file ends at offset {:#x}, expected {} bytes at {:#x}",
                        offset + done, buf.size(), offset);
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Status pwrite_all(int fd, std::span<const uint8_t> buf, uint64_t offset) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pwrite(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(fmt::format("pwrite {} bytes at offset {:#x}", buf.size(), offset + done));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Result<uint64_t> file_size(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("fstat");
  return static_cast<uint64_t>(st.st_size);
}

std::string parent_dir(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status fsync_parent_dir(const std::string& path) {
  std::string dir = parent_dir(path);
  auto fd = SNAPVM_TRY(open_file(dir, O_RDONLY | O_DIRECTORY));
  if (::fsync(fd.get()) != 0) return errno_error(fmt::format("fsync directory {}", dir));
  return {};
}

}  // namespace snapvm
