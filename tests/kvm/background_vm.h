// A VM running in a background thread for tests that talk to its guest,
// and a helper that runs a command in it through the agent.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/client.h"
#include "vmm/machine.h"
#include "vmm/vm_runner.h"

namespace snapvm::test {

// What a test VM has beyond the test guest itself.
struct VmOptions {
  std::vector<MachineConfig::Disk> disks;
  std::vector<state::PortForward> publish;
  uint32_t vcpus = 2;
  uint64_t mem_bytes = 256ull << 20;
  bool track_dirty = false;
  std::string extra_cmdline;  // appended to the guest kernel's command line
  // How the VM comes up. Most tests need only a running guest with its
  // agent up: they get a fresh restore of a snapshot of the same
  // configuration, booted once per test process (warm_snapshot.h), which
  // costs ~0.1 s where a boot costs ~17 s in the emulated arm64 host. A
  // test of booting itself, of the first boot's devices, or of anything a
  // restore would hide asks for kBoot and says why. A warm start that fails
  // fails the test (error()); it never falls back to a boot.
  enum class Start { kWarmRestore, kBoot } start = Start::kWarmRestore;
};

class BackgroundVm {
 public:
  BackgroundVm(const std::string& vsock, const VmOptions& options);
  explicit BackgroundVm(const std::string& vsock, std::vector<MachineConfig::Disk> disks = {},
                        std::vector<state::PortForward> publish = {})
      : BackgroundVm(vsock, with(std::move(disks), std::move(publish))) {}
  ~BackgroundVm();
  // Waits until the guest is ready: a booted guest's readiness line; for a
  // warm restore, the agent has answered and set the guest's clock and
  // entropy, as `snapvm restore` has it do.
  bool wait_ready(std::chrono::seconds timeout = std::chrono::seconds(600));
  bool restored() const { return restored_; }
  const std::string& error() const { return error_; }
  bool exited() const { return runner_ && runner_->ended(); }
  Machine& machine() { return runner_->machine(); }
  std::string console();

 private:
  static VmOptions with(std::vector<MachineConfig::Disk> disks, std::vector<state::PortForward> publish) {
    VmOptions o;
    o.disks = std::move(disks);
    o.publish = std::move(publish);
    return o;
  }
  // Builds the machine (booted or restored); null after a failure, said in error_.
  std::unique_ptr<Machine> build(const VmOptions& options, const std::string& vsock);
  bool restored_ = false;
  std::string vsock_;
  std::mutex mu_;
  std::string console_;  // guarded by mu_: the vCPU threads append, the test reads
  std::string error_;    // the test's thread only
  std::unique_ptr<VmRunner> runner_;  // last: it stops and joins the VM before the console goes
};

struct Output {
  std::string out, err;
  agent::ExecResult result;
  std::string error;
};

Output run(const std::string& vsock, std::vector<std::string> argv, int stdin_fd = -1,
           std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

// Whether a failed run never got its command to the agent (the VM's socket
// not there yet, no answer yet): the only failure worth a retry. A command
// the agent took and then dropped is a bug to report (a retry once hid a
// vsock race after restore).
bool worth_retrying(const Output& o);

}  // namespace snapvm::test
