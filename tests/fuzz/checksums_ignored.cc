// Linked into the snapshot-reader fuzzer only, in place of
// src/base/checksums_enforced.cc: mutated inputs get past the checksums to the
// decoders behind them (the convention libFuzzer users share, as a link-time
// choice instead of FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION).
#include "base/checksum.h"

namespace snapvm {

bool checksums_enforced() { return false; }

}  // namespace snapvm
