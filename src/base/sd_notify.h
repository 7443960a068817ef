// systemd's service notification protocol (sd_notify(3)) without libsystemd:
// a service started with Type=notify tells the service manager it is ready
// (READY=1), what it is doing (STATUS=...) and that it is stopping
// (STOPPING=1) by sending one datagram of newline-separated VAR=VALUE
// assignments to the AF_UNIX socket named by $NOTIFY_SOCKET: an absolute
// path, or an abstract socket name written with a leading '@'.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"

namespace snapvm {

class ServiceNotifier {
 public:
  // A notifier that sends nothing (not started by a service manager).
  ServiceNotifier() = default;
  // From $NOTIFY_SOCKET: a no-op notifier when it is unset or empty; an
  // error naming the variable when it is neither an absolute path nor an
  // '@' name (systemd's vsock: addresses are not supported). With
  // `unset_environment` the variable is removed (as sd_notify's
  // unset_environment), so that the processes this one starts do not
  // inherit it; call that before any thread starts.
  static Result<ServiceNotifier> from_environment(bool unset_environment);
  // For `address` as $NOTIFY_SOCKET would give it.
  static Result<ServiceNotifier> for_address(std::string_view address);

  // Whether notifications go anywhere.
  bool enabled() const { return fd_.valid(); }
  // Sends `state` ("READY=1", "STOPPING=1", "STATUS=...", or several
  // separated by newlines) as one datagram; nothing when not enabled. The
  // socket is made up front, so sending needs only sendto (a seccomp
  // filter that allows it is enough), and each datagram is addressed
  // anew, so a service manager that re-executed itself still hears it.
  Status notify(std::string_view state) const;

 private:
  UniqueFd fd_;
  sockaddr_un address_{};
  socklen_t address_length_ = 0;
  std::string name_;  // as $NOTIFY_SOCKET spelled it, for errors
};

}  // namespace snapvm
