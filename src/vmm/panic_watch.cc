#include "vmm/panic_watch.h"

namespace snapvm {
namespace {

constexpr std::string_view kMarker = "Kernel panic - not syncing: ";

}  // namespace

void PanicWatch::feed(std::string_view bytes) {
  if (seen_.load(std::memory_order_relaxed)) return;
  MutexLock lock(mu_);
  for (char ch : bytes) {
    if (ch != '\n' && ch != '\r') {
      if (line_.size() < kMaxLine) line_ += ch;
      continue;
    }
    if (auto at = line_.find(kMarker); at != std::string::npos) {
      panic_ = line_.substr(at + kMarker.size());
      seen_ = true;
      return;
    }
    line_.clear();
  }
}

std::optional<std::string> PanicWatch::panic_line() const {
  MutexLock lock(mu_);
  return panic_;
}

}  // namespace snapvm
