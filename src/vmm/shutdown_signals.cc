#include "vmm/shutdown_signals.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

namespace snapvm {

Result<ShutdownSignals> take_shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, s);
  if (int err = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0) {
    return tl::unexpected(Error(ErrorCode::kIo, "block SIGINT, SIGTERM and SIGHUP", err));
  }
  ShutdownSignals fds;
  fds.signals.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fds.signals.valid()) return errno_error("signalfd");
  fds.wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fds.wake.valid()) return errno_error("eventfd");
  return fds;
}

int stop_on_signal(VmRunner& runner, const ShutdownSignals& fds, std::stop_token stop) {
  return stop_on_signal([&runner] { runner.request_stop(); }, fds, stop);
}

int stop_on_signal(const std::function<void()>& request_stop, const ShutdownSignals& fds, std::stop_token stop) {
  std::stop_callback wake(stop, [&fds] {
    uint64_t one = 1;
    (void)!::write(fds.wake.get(), &one, sizeof one);
  });
  int first = 0;
  while (!stop.stop_requested()) {
    pollfd p[2] = {{fds.signals.get(), POLLIN, 0}, {fds.wake.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) <= 0) continue;
    signalfd_siginfo info{};
    if (::read(fds.signals.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      const int sig = static_cast<int>(info.ssi_signo);
      if (first != 0) ::_exit(128 + sig);  // a second signal: the stop stalled, and the user has waited enough
      first = sig;
      request_stop();
    }
  }
  return first;
}

}  // namespace snapvm
