// Alone in its file so that a program which defines checksums_enforced()
// itself (the snapshot-reader fuzzer) never pulls this one from the archive.
#include "base/checksum.h"

namespace snapvm {

bool checksums_enforced() { return true; }

}  // namespace snapvm
