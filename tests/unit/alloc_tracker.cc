// Kept in its own file: a replaced global operator new must not be inlined
// next to code that GCC then flags for mismatched new/delete.
#include "alloc_tracker.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<bool> g_track{false};
std::atomic<size_t> g_largest{0};
}  // namespace

void* operator new(size_t n) {
  if (g_track.load(std::memory_order_relaxed)) {
    size_t prev = g_largest.load();
    while (n > prev && !g_largest.compare_exchange_weak(prev, n)) {
    }
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace snapvm::test {

void start_alloc_tracking() {
  g_largest = 0;
  g_track = true;
}

size_t stop_alloc_tracking() {
  g_track = false;
  return g_largest.load();
}

}  // namespace snapvm::test
