// How a machine's run ended, and what a command says of it.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace snapvm {

enum class ExitReason {
  kPowerOff,  // the guest powered off (PSCI SYSTEM_OFF; ACPI S5 on x86_64)
  kReset,     // the guest asked for a reset (PSCI SYSTEM_RESET; ACPI or i8042 reset, triple fault)
  kCrash,     // the guest reported a crash
  kStopped,   // request_stop() from the host
};
std::string_view to_string(ExitReason r);

// What every front door (run, restore, the Firecracker API) tells its
// user when the VM has ended: one line for stderr (empty: nothing to
// report) and the process's exit status. `detail` is Machine::exit_detail().
// The exit statuses of a guest that ended other than by powering off, so
// a script tells a reboot or a crash from a clean end (kExitStatusHelp).
inline constexpr int kExitGuestReset = 3;
inline constexpr int kExitGuestCrash = 4;

struct ExitReport {
  std::string line;
  int status = 0;
};
ExitReport report_exit(const Result<ExitReason>& exit, const std::string& detail);

}  // namespace snapvm
