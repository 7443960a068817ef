#include "base/units.h"

#include <cctype>
#include <charconv>

namespace snapvm {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

std::string human_multiple(uint64_t bytes) {
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  if (bytes >= (1u << 10) && bytes % (1u << 10) == 0) return fmt::format("{} KiB", bytes >> 10);
  return fmt::format("{} bytes", bytes);
}

}  // namespace

Result<uint64_t> parse_size(std::string_view text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc::result_out_of_range) return make_error(ErrorCode::kInvalidArgument, "too large");
  if (ec != std::errc() || end == text.data()) {
    return make_error(ErrorCode::kInvalidArgument, "not a size (like 4096, 512M, 512MiB or 2g)");
  }
  std::string_view suffix(end, static_cast<size_t>(text.data() + text.size() - end));
  int shift = 0;
  if (!suffix.empty()) {
    switch (suffix.front()) {
      case 'K': case 'k': shift = 10; break;
      case 'M': case 'm': shift = 20; break;
      case 'G': case 'g': shift = 30; break;
      case 'T': case 't': shift = 40; break;
      default:
        return make_error(ErrorCode::kInvalidArgument, "unknown size suffix '{}' (K, M, G or T, optionally with iB or B)",
                          suffix);
    }
    std::string_view rest = suffix.substr(1);
    if (!rest.empty() && !iequals(rest, "ib") && !iequals(rest, "b")) {
      return make_error(ErrorCode::kInvalidArgument, "unknown size suffix '{}' (K, M, G or T, optionally with iB or B)",
                        suffix);
    }
  }
  if (shift != 0 && value > (UINT64_MAX >> shift)) return make_error(ErrorCode::kInvalidArgument, "too large");
  return value << shift;
}

Result<uint64_t> parse_size_flag(std::string_view flag, std::string_view text, uint64_t multiple) {
  auto size = parse_size(text);
  if (!size) return make_error(ErrorCode::kInvalidArgument, "{} {}: {}", flag, text, size.error().message());
  if (multiple != 0 && (*size == 0 || *size % multiple != 0)) {
    return make_error(ErrorCode::kInvalidArgument, "{} {}: not a positive multiple of {}", flag, text,
                      human_multiple(multiple));
  }
  return size;
}

}  // namespace snapvm
