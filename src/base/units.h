// Sizes as users write them: 512M, 2G, 4096, 64K, 512MiB, 1gib.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/result.h"

namespace snapvm {

// Parses a byte count with an optional K, M, G or T suffix (binary units,
// optionally followed by "iB" or "B"), in any case: 512M, 512m, 512MiB,
// 512mib, 1G, 1GiB, 4096. Errors say why, without repeating the text.
Result<uint64_t> parse_size(std::string_view text);

// parse_size for a command-line flag: errors name the flag and the text as
// the user wrote them ("--mem 1000X: unknown size suffix 'X' ..."), and a
// non-zero `multiple` also refuses 0 and sizes that are not multiples of it.
Result<uint64_t> parse_size_flag(std::string_view flag, std::string_view text, uint64_t multiple = 0);

}  // namespace snapvm
