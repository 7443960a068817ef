#include "base/sd_notify.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace snapvm {

Result<ServiceNotifier> ServiceNotifier::from_environment(bool unset_environment) {
  const char* value = std::getenv("NOTIFY_SOCKET");
  std::string address = value == nullptr ? "" : value;
  if (unset_environment) ::unsetenv("NOTIFY_SOCKET");
  if (address.empty()) return ServiceNotifier();
  return for_address(address);
}

Result<ServiceNotifier> ServiceNotifier::for_address(std::string_view address) {
  ServiceNotifier n;
  n.name_ = std::string(address);
  if (address.empty() || (address.front() != '/' && address.front() != '@')) {
    return make_error(ErrorCode::kInvalidArgument,
                      "NOTIFY_SOCKET '{}' is neither an absolute path nor an abstract socket name (@NAME)", address);
  }
  // sun_path holds the path and its terminating NUL; an abstract name, its
  // leading NUL and the name, unterminated (the length says where it ends).
  const size_t room = sizeof n.address_.sun_path - (address.front() == '/' ? 1 : 0);
  if (address.size() < 2 || address.size() > room) {
    return make_error(ErrorCode::kInvalidArgument, "NOTIFY_SOCKET '{}': not a usable Unix socket address length",
                      address);
  }
  n.address_.sun_family = AF_UNIX;
  std::memcpy(n.address_.sun_path, address.data(), address.size());
  if (address.front() == '@') n.address_.sun_path[0] = '\0';
  n.address_length_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size() +
                                             (address.front() == '/' ? 1 : 0));
  n.fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!n.fd_.valid()) return errno_error(fmt::format("NOTIFY_SOCKET {}: socket", address));
  return n;
}

Status ServiceNotifier::notify(std::string_view state) const {
  if (!enabled()) return {};
  ssize_t sent;
  do {
    sent = ::sendto(fd_.get(), state.data(), state.size(), MSG_NOSIGNAL,
                    reinterpret_cast<const sockaddr*>(&address_), address_length_);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return errno_error(fmt::format("notify the service manager at {}", name_));
  if (static_cast<size_t>(sent) != state.size()) {
    return make_error(ErrorCode::kIo, "notify the service manager at {}: a short datagram", name_);
  }
  return {};
}

}  // namespace snapvm
