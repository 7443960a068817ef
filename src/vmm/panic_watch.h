// Tells a guest kernel's panic from a reboot. With the default panic=-1 a
// panicking Linux resets at once, through the same PSCI SYSTEM_RESET or
// reset port a reboot uses, and Debian's arm64 kernel has no pvpanic
// driver to say otherwise: what differs is the line the kernel prints on
// its console first ("Kernel panic - not syncing: ..."), at KERN_EMERG, so
// even a `quiet` guest prints it. The console's bytes pass through here.
// A guest can print the line itself; it then only changes how its own end
// is reported.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <string_view>

#include "base/thread_annotations.h"

namespace snapvm {

class PanicWatch {
 public:
  // The console's output, in the order the guest wrote it (any thread).
  void feed(std::string_view bytes) EXCLUDES(mu_);
  // The first panic line seen, without its "Kernel panic - not syncing: ".
  std::optional<std::string> panic_line() const EXCLUDES(mu_);

  // Longest console line kept while looking for the marker.
  static constexpr size_t kMaxLine = 512;

 private:
  mutable Mutex mu_;
  std::string line_ GUARDED_BY(mu_);  // the console line being written
  std::optional<std::string> panic_ GUARDED_BY(mu_);
  std::atomic<bool> seen_{false};  // once seen, the console is no longer read
};

}  // namespace snapvm
