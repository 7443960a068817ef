#include "base/units.h"

#include <charconv>

namespace snapvm {

Result<uint64_t> parse_size(std::string_view text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) {
    return make_error(ErrorCode::kInvalidArgument, "'{}' is not a size (like 512M or 2G)", text);
  }
  std::string_view suffix(end, static_cast<size_t>(text.data() + text.size() - end));
  int shift = 0;
  if (!suffix.empty()) {
    switch (suffix.front()) {
      case 'K': case 'k': shift = 10; break;
      case 'M': case 'm': shift = 20; break;
      case 'G': case 'g': shift = 30; break;
      case 'T': case 't': shift = 40; break;
      default: return make_error(ErrorCode::kInvalidArgument, "'{}': unknown size suffix '{}'", text, suffix);
    }
    suffix.remove_prefix(1);
    if (suffix != "" && suffix != "iB" && suffix != "B") {
      return make_error(ErrorCode::kInvalidArgument, "'{}': unknown size suffix", text);
    }
  }
  if (shift != 0 && value > (UINT64_MAX >> shift)) {
    return make_error(ErrorCode::kInvalidArgument, "'{}' is too large", text);
  }
  return value << shift;
}

}  // namespace snapvm
