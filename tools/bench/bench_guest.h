// A guest booted for a benchmark: the test guest (kernel, initramfs with the
// snapvm agent), running on a background thread until the object dies.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "vmm/machine.h"

namespace snapvm::bench {

[[noreturn]] void die(const std::string& program, const std::string& what);

// The median of `v` (the upper one of an even count).
double median(std::vector<double> v);

// Milliseconds since `t0`.
double ms_since(std::chrono::steady_clock::time_point t0);

// Bytes process `pid` has read through read() and friends (/proc/PID/io
// rchar); 0 if unknown.
uint64_t bytes_read_by(pid_t pid);

// Runs `true` in the guest through the agent at `vsock` every `poll` until
// it succeeds; false if it has not within `limit`.
bool wait_for_agent(const std::string& vsock, std::chrono::milliseconds poll,
                    std::chrono::seconds limit = std::chrono::minutes(2));

// One progress line on stderr, "[  12.3 s] what", timed from program start,
// so a benchmark killed by a timeout shows the step it was in.
void progress(const std::string& what);

// Names a step that must end within `limit`; if it does not, prints the step
// and exits, instead of hanging until an outer timeout says nothing.
class StepWatchdog {
 public:
  StepWatchdog(std::string step, std::chrono::seconds limit);
  ~StepWatchdog();
  StepWatchdog(const StepWatchdog&) = delete;
  StepWatchdog& operator=(const StepWatchdog&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

class BenchGuest {
 public:
  // Boots and waits for the guest's readiness line; exits the program with
  // one line on failure.
  BenchGuest(const std::string& kernel, const std::string& initrd, uint64_t mem, uint32_t cpus,
             const std::string& vsock, bool track_dirty = false);
  ~BenchGuest();
  Machine& machine() { return *machine_; }
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
  std::string console_;
  std::unique_ptr<Machine> machine_;
  std::thread runner_;
  // How run() ended, set once by the runner thread (guarded by mu_): a
  // guest that powers off or fails while booting is reported at once.
  std::optional<std::string> ended_;
};

}  // namespace snapvm::bench
