// Sizes as users write them: 512M, 2G, 4096, 64K.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/result.h"

namespace snapvm {

// Parses a byte count with an optional K, M, G or T suffix (binary units,
// optionally followed by "iB" or "B").
Result<uint64_t> parse_size(std::string_view text);

}  // namespace snapvm
