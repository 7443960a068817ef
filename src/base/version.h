// The program and version that snapshots record as their creator and
// --version prints.
#pragma once

namespace snapvm {

inline constexpr const char* kProgramVersion = "snapvm 0.1.0";

}  // namespace snapvm
