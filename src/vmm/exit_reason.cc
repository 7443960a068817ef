#include "vmm/exit_reason.h"

#include <fmt/format.h>

namespace snapvm {

std::string_view to_string(ExitReason r) {
  switch (r) {
    case ExitReason::kPowerOff: return "power off";
    case ExitReason::kReset: return "reset";
    case ExitReason::kCrash: return "crash";
    case ExitReason::kStopped: return "stopped";
  }
  return "unknown";
}

ExitReport report_exit(const Result<ExitReason>& exit, const std::string& detail) {
  if (!exit) return {fmt::format("snapvm: {}", exit.error().describe()), 1};
  switch (*exit) {
    case ExitReason::kPowerOff:
    case ExitReason::kStopped: return {};
    case ExitReason::kReset:
      if (!detail.empty()) {
        return {fmt::format("snapvm: the guest reset ({}); the VM has stopped", detail), kExitGuestReset};
      }
      return {"snapvm: the guest asked for a reset; the VM has stopped", kExitGuestReset};
    case ExitReason::kCrash:
      if (!detail.empty()) return {fmt::format("snapvm: the guest crashed ({}); the VM has stopped", detail), kExitGuestCrash};
      return {"snapvm: the guest reported a crash; the VM has stopped", kExitGuestCrash};
  }
  return {"snapvm: the VM ended for a reason this build does not know", 1};
}

}  // namespace snapvm
