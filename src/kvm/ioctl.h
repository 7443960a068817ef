// Typed ioctl helpers: every failure names the ioctl and carries errno.
#pragma once

#include <sys/ioctl.h>

#include <cerrno>
#include <string_view>

#include "base/result.h"

namespace snapvm::kvm {

// Retries on EINTR (except where the caller wants it, like KVM_RUN).
template <typename Arg>
Result<int> checked_ioctl(int fd, unsigned long request, Arg arg, std::string_view name) {
  for (;;) {
    int r = ::ioctl(fd, request, arg);
    if (r >= 0) return r;
    if (errno != EINTR) return errno_error(std::string(name));
  }
}

}  // namespace snapvm::kvm
