#include "vmm/boot_watchdog.h"

#include <condition_variable>
#include <mutex>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace snapvm {

void report_silent_boot(VmRunner& runner, const std::atomic<bool>& console_spoke, std::chrono::milliseconds quiet_for,
                        std::stop_token stop, const std::function<void(const std::string&)>& say) {
  std::mutex mu;
  std::condition_variable_any cv;
  {
    std::unique_lock lock(mu);
    cv.wait_for(lock, stop, quiet_for, [] { return false; });
  }
  if (stop.stop_requested() || console_spoke.load()) return;
  std::string where = "its vCPUs could not be paused to read where they are";
  Machine& m = runner.machine();
  bool paused_here = false;
  if (m.pause(std::chrono::seconds(1), &paused_here)) {
    // Someone else's pause (the control socket's) is theirs to end.
    if (!paused_here) return;
    if (auto vcpus = m.describe_vcpus()) where = fmt::format("{}", fmt::join(*vcpus, "; "));
    (void)m.resume();
  }
  say(fmt::format("no console output {} s after the boot began ({}); the VM runs on. A guest that stays silent has a "
                  "console= other than the machine's, a kernel without that console's driver, or a host whose KVM "
                  "cannot run it",
                  std::chrono::duration_cast<std::chrono::seconds>(quiet_for).count(), where));
}

}  // namespace snapvm
