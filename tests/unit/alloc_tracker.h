// Records the largest single operator-new allocation while tracking is on:
// proves that a count read from a file did not size an allocation.
#pragma once

#include <cstddef>

namespace snapvm::test {

void start_alloc_tracking();
size_t stop_alloc_tracking();  // returns the largest allocation seen

}  // namespace snapvm::test
