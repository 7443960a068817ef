// The VmBackend that builds and runs a real snapvm Machine. The VM is built
// and run on the VMM thread (the command's main thread, outside the API's
// seccomp filter, which does not allow creating VMs); the API threads hand
// it the configuration and wait for the answer, as Firecracker's API thread
// hands requests to its VMM thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "base/thread_annotations.h"
#include "firecracker/api.h"
#include "vmm/machine.h"
#include "vmm/vm_runner.h"

namespace snapvm::firecracker {

// Firecracker's machine from its configuration: the root drive first (as
// /dev/vda, named on the command line), the others in order.
Result<MachineConfig> machine_config_of(const VmConfig& config);
// Per drive of `config` (in put order), its disk index in that machine.
std::vector<size_t> disk_order(const VmConfig& config);

class MachineBackend final : public VmBackend {
 public:
  explicit MachineBackend(std::function<void(std::string_view)> console) : console_(std::move(console)) {}

  // Waits until a VM is built (InstanceStart) or stop(); then runs it until
  // the guest powers off or resets, or stop(). Returns the exit status: 0
  // for a guest that ended itself or a stop, 1 for an error or a crash.
  int run_vmm_thread();
  // Thread-safe: ends run_vmm_thread (SIGTERM).
  void stop();
  // Before any request: how long a Uffd-backed VM's guest memory faults may
  // wait for the page server before the VMM ends (0: forever).
  void set_page_fault_timeout(std::chrono::milliseconds timeout) { page_fault_timeout_ = timeout; }

  Status start(const VmConfig& config) override;
  Status load_snapshot(const SnapshotLoadBody& body) override;
  Status pause() override;
  Status resume() override;
  Status create_snapshot(const SnapshotCreateBody& body) override;
  Status send_ctrl_alt_del() override;
  Status replace_drive(size_t index, const std::string& path) override;
  std::vector<DriveBody> loaded_drives() override;
  Status redirect_log(UniqueFd fd) override;
  nlohmann::json metrics() override;

 private:
  // Runs `build` on the VMM thread and returns its result.
  Status on_vmm_thread(std::function<Status()> build);
  Machine* machine();

  std::function<void(std::string_view)> console_;
  // Per API drive (in put order), its disk index in the machine (root first).
  // Set by start() or load_snapshot() (the snapshot's order), read by
  // replace_drive(), all on the API thread.
  std::vector<size_t> disk_order_;
  std::chrono::milliseconds page_fault_timeout_{std::chrono::seconds(30)};
  Mutex mu_;
  std::condition_variable_any cv_;
  std::function<Status()> job_ GUARDED_BY(mu_);
  std::optional<Status> job_result_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  // Built by a job, until the VMM thread hands it to runner_.
  std::unique_ptr<Machine> built_ GUARDED_BY(mu_);
  bool handed_over_ GUARDED_BY(mu_) = false;  // a machine was built: no second one
  // The machine the API sees: set once it runs, and it lives (in runner_)
  // until the backend does.
  Machine* machine_ GUARDED_BY(mu_) = nullptr;
  std::unique_ptr<VmRunner> runner_;  // the VMM thread's only
};

}  // namespace snapvm::firecracker
