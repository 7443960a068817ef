// `snapvm restore` in its own process, as users run it, for tests that
// restore snapshots and talk to the restored guest.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "background_vm.h"

namespace snapvm::test {

class RestoredVm {
 public:
  // Restores `snap` with this clone's vsock socket; stderr (the timing
  // breakdown and the sync report) goes to `log`; `extra` are more
  // `snapvm restore` arguments (--disk, --paused, ...).
  RestoredVm(const std::string& snap, const std::string& vsock, const std::string& log,
             const std::vector<std::string>& extra = {});
  ~RestoredVm();  // SIGTERM, then waits
  RestoredVm(const RestoredVm&) = delete;
  RestoredVm& operator=(const RestoredVm&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& vsock() const { return vsock_; }
  // The restore log, the end of the guest's console and, while the VMM
  // runs, its state from the control socket (devices' queues; vCPUs'
  // registers, read in a brief pause): what a failing test shows.
  std::string log() const;
  // Waits until the restore log contains `text` (or the process ends).
  bool wait_log(const std::string& text, std::chrono::seconds timeout = std::chrono::seconds(60));
  // Waits for the VMM to end and returns its wait status (nullopt after
  // `timeout`, the VMM left running for the destructor).
  std::optional<int> wait_exit(std::chrono::seconds timeout);

 private:
  std::string vm_state() const;

  pid_t pid_ = -1;
  std::string vsock_, log_, api_;
};

// Runs argv through the agent, retrying until a restored guest answers (its
// process needs a moment to map, rebuild and start).
Output run_when_up(const std::string& vsock, std::vector<std::string> argv);

}  // namespace snapvm::test
