// The one way a Machine is run, for every front door (run, restore, bake,
// the Firecracker backend, the KVM tests' background VM, the benchmarks):
// the machine runs on a thread of the runner's, its control socket (when
// asked for) serves beside it, and the work that talks to the guest while
// it runs (the clock and entropy after a restore, an image's program, a
// bake) runs on companion threads the runner owns and joins. No thread
// outlives the machine, and every door reports the end the same way.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/thread_annotations.h"
#include "vmm/exit_reason.h"
#include "vmm/machine.h"

namespace snapvm {

class ControlServer;

struct RunnerOptions {
  // Serves the control socket here while the machine runs (empty: none).
  std::string control_socket;
  // What the control socket's `info` says of the VM: its name and where it
  // came from ("kernel PATH", "snapshot PATH").
  std::string name, origin;
  // Runs on the machine's thread once its vCPU threads exist: where the
  // command line installs that thread's seccomp filter, and where the
  // Firecracker backend answers InstanceStart.
  std::function<void()> on_started;
};

class VmRunner {
 public:
  // A companion's work; `stop` is requested once the machine has ended
  // (or the runner is going away): a companion that waits on the guest
  // checks it and returns.
  using Companion = std::function<void(std::stop_token stop)>;

  // Starts `machine` on a thread of its own. Fails (and runs nothing)
  // when the control socket cannot be served or the thread not made.
  static Result<std::unique_ptr<VmRunner>> start(std::unique_ptr<Machine> machine, RunnerOptions options = {});
  // Stops the machine if it still runs, then joins the companions and the
  // machine's thread before the machine goes.
  ~VmRunner();
  VmRunner(const VmRunner&) = delete;
  VmRunner& operator=(const VmRunner&) = delete;

  // Thread-safe for the calls Machine itself allows from any thread.
  Machine& machine() { return *machine_; }

  // Runs `task` on a companion thread; thread-safe, and never waits for
  // the machine. A thread that cannot be made stops the VM, and wait()
  // then tells why.
  void add_companion(Companion task) EXCLUDES(mu_);

  // Whether the machine's run has returned.
  bool ended() const { return ended_.load(); }
  // Waits until the machine's run returns and tells how it ended; the
  // companions are stopped and joined before this returns, so no more
  // guest work is under way. May be called more than once.
  Result<ExitReason> wait() EXCLUDES(mu_, join_mu_);
  // wait(), said as every front door says it (vmm/exit_reason.h).
  ExitReport wait_report();
  // Thread-safe: makes the machine's run return kStopped soon.
  void request_stop() { machine_->request_stop(); }

 private:
  VmRunner(std::unique_ptr<Machine> machine, RunnerOptions options);
  void join_companions() EXCLUDES(mu_);

  std::unique_ptr<Machine> machine_;
  RunnerOptions options_;
  // One joiner of the machine's thread at a time. Not mu_: a companion may
  // add another while wait() joins.
  Mutex join_mu_;
  // Holds a reference to the machine: reset by wait(), before machine_ goes.
  std::unique_ptr<ControlServer> control_ GUARDED_BY(join_mu_);
  std::optional<Result<ExitReason>> exit_;  // written by the machine's thread before ended_ is set
  std::atomic<bool> ended_{false};
  std::thread thread_;  // the machine's run; joined by wait() under join_mu_
  bool joined_ GUARDED_BY(join_mu_) = false;
  std::stop_source companions_stop_;
  Mutex mu_;
  std::vector<std::jthread> companions_ GUARDED_BY(mu_);
  std::optional<Error> companion_error_ GUARDED_BY(mu_);  // a companion thread that could not be made
};

}  // namespace snapvm
