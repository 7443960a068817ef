// A guest booted for a benchmark: the test guest (kernel, initramfs with the
// snapvm agent), running on a background thread until the object dies.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "tools/bench/child_process.h"
#include "tools/bench/harness.h"
#include "vmm/machine.h"
#include "vmm/vm_runner.h"

namespace snapvm::bench {

// Runs `true` in the guest through the agent at `vsock` every `poll` until
// it succeeds; false if it has not within `limit`.
bool wait_for_agent(const std::string& vsock, std::chrono::milliseconds poll,
                    std::chrono::seconds limit = std::chrono::minutes(2));

// wait_for_agent() for a guest that `vmm` restored, polling every `poll`:
// exits with "what: the restored agent never answered: " and the VMM's
// output if it does not answer.
void await_restored_agent(const std::string& vsock, const std::string& what, const ChildProcess& vmm,
                          std::chrono::milliseconds poll = std::chrono::milliseconds(2));

class BenchGuest {
 public:
  // Boots and waits for the guest's readiness line; exits the program with
  // one line on failure.
  BenchGuest(const std::string& kernel, const std::string& initrd, uint64_t mem, uint32_t cpus,
             const std::string& vsock, bool track_dirty = false);
  ~BenchGuest();
  Machine& machine() { return runner_->machine(); }
  const std::string& vsock() const { return vsock_; }
  // Runs `sh -c script` through the agent; returns the host seconds it took.
  double run(const std::string& script);

 private:
  // Boots a machine of `c` and waits for the guest's readiness line: empty
  // when it came, else a report of the hang (the machine is then gone).
  std::string boot(const MachineConfig& c);
  std::string console_tail() const;  // with mu_ held

  std::string vsock_;
  std::mutex mu_;
  std::string console_;  // guarded by mu_: the vCPU threads append
  std::unique_ptr<VmRunner> runner_;  // last: stops and joins the VM before the console goes
};

// The preamble of the benchmarks that restore one snapshot again and again:
// boots a `mem`, `cpus` guest (agent at `vsock`), pauses it, writes its
// snapshot to `path` and, if given, lets `also` save the paused machine in
// other ways too; returns the snapshot's statistics. The guest is gone on
// return; a failure exits the program.
WriteStats snapshot_booted_guest(const std::string& kernel, const std::string& initrd, uint64_t mem,
                                    uint32_t cpus, const std::string& vsock, const std::string& path,
                                    const std::function<void(Machine&)>& also = {});

}  // namespace snapvm::bench
