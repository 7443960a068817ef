// Runs independent work units on a few threads, stops at the first error, and
// reports progress from the calling thread while the workers run.
#pragma once

#include <cstdint>
#include <atomic>
#include <functional>

#include "base/result.h"

namespace snapvm {

using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

// Calls fn(unit) for every unit in [0, units) on `threads` threads (0 means
// one per online CPU). fn adds what it finished to `*done` for progress.
Status parallel_for(uint64_t units, unsigned threads, const std::function<Status(uint64_t unit)>& fn,
                    const ProgressFn& progress = {}, const std::atomic<uint64_t>* done = nullptr, uint64_t total = 0);

unsigned default_thread_count();

}  // namespace snapvm
