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
      // Guest text bound for the VMM's own stderr line: printable ASCII
      // only, so no escape sequence or forged line rides on it.
      std::string text = line_.substr(at + kMarker.size());
      for (char& t : text) {
        if (t < 0x20 || t > 0x7e) t = '?';
      }
      panic_ = std::move(text);
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
