// Host paths that untrusted input (a snapshot) names.
#pragma once

#include <string>

#include "base/result.h"

namespace snapvm {

// `path` with symbolic links resolved, if it lies inside the directory
// `dir` (resolved too); an error otherwise, or if `dir` does not exist. The
// last component of `path` need not exist yet (a socket about to be made).
Result<std::string> resolve_within(const std::string& path, const std::string& dir);

// The directory holding `file` (resolved).
Result<std::string> directory_of(const std::string& file);

}  // namespace snapvm
