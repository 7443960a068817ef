// SIGINT, SIGTERM and SIGHUP end a VM through the VMM's normal path, which
// removes every socket the VM made (control, vsock) and says how it ended;
// the default action killed the VMM on the spot and left its sockets
// behind. (A guest's clean shutdown is asked for with its power button:
// the control socket, the Firecracker API.)
#pragma once

#include <functional>
#include <stop_token>

#include "base/result.h"
#include "base/unique_fd.h"
#include "vmm/vm_runner.h"

namespace snapvm {

struct ShutdownSignals {
  UniqueFd signals;  // a signalfd reading the three
  UniqueFd wake;     // an eventfd: the companion's stop was asked for
};

// Blocks the three signals in the calling thread, and so in every thread
// it starts from now on, and opens what the companion waits on. Call it
// before any thread exists (a thread started earlier would still take the
// signal's default action) and before a seccomp filter.
Result<ShutdownSignals> take_shutdown_signals();

// A runner's companion: sleeps until a signal or `stop`; on a signal,
// stops the VM and returns, once the VM has ended, the signal's number (0:
// none came). A second signal before then ends the process at once
// (128 + its number): the stop has stalled.
int stop_on_signal(VmRunner& runner, const ShutdownSignals& fds, std::stop_token stop);
// The same for a VMM that stops by other means (the Firecracker backend).
int stop_on_signal(const std::function<void()>& request_stop, const ShutdownSignals& fds, std::stop_token stop);

}  // namespace snapvm
