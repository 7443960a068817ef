#include "image/program_console.h"

#include <charconv>

namespace snapvm::image {

std::function<void(std::string_view)> ImageConsole::sink() {
  return [this](std::string_view s) { feed(s); };
}

std::optional<int> ImageConsole::exit_status() const {
  MutexLock lock(mu_);
  return exit_status_;
}

void ImageConsole::feed(std::string_view chunk) {
  MutexLock lock(mu_);
  partial_.append(chunk);
  size_t start = 0;
  for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string_view line(partial_.data() + start, nl + 1 - start);
    std::string_view text = line.substr(0, line.find_last_not_of("\r\n") + 1);
    if (text.starts_with("SNAPVM-APP-EXIT ")) {
      int value = 0;
      auto field = text.substr(text.find('=') + 1);
      std::from_chars(field.data(), field.data() + field.size(), value);
      exit_status_ = text.find("signal=") != std::string_view::npos ? 128 + value : value;
      continue;
    }
    if (text.starts_with("SNAPVM-GUEST-") || text.starts_with("snapvm-init: ")) continue;
    // The kernel's last word when the program's end powers the guest off
    // (printed even with `quiet`): not the program's.
    if (text.ends_with("] reboot: Power down")) continue;
    out_(line);
  }
  partial_.erase(0, start);
  // A program that prints without newlines is still shown, in pieces.
  if (partial_.size() > 4096) {
    out_(partial_);
    partial_.clear();
  }
}

}  // namespace snapvm::image
