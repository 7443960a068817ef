#include "base/parallel.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace snapvm {

unsigned default_thread_count() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

Status parallel_for(uint64_t units, unsigned threads, const std::function<Status(uint64_t)>& fn,
                    const ProgressFn& progress, const std::atomic<uint64_t>* done, uint64_t total) {
  if (threads == 0) threads = default_thread_count();
  if (threads > units) threads = static_cast<unsigned>(units == 0 ? 1 : units);

  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::optional<Error> first_error;
  std::mutex mu;
  std::condition_variable cv;
  unsigned running = threads;

  auto worker = [&] {
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) break;
      uint64_t u = next.fetch_add(1, std::memory_order_relaxed);
      if (u >= units) break;
      Status s = fn(u);
      if (!s) {
        std::lock_guard lock(mu);
        if (!first_error) first_error = std::move(s.error());
        failed = true;
      }
    }
    std::lock_guard lock(mu);
    --running;
    cv.notify_all();
  };

  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (unsigned i = 0; i < threads; ++i) pool.emplace_back(worker);
  {
    std::unique_lock lock(mu);
    while (running > 0) {
      cv.wait_for(lock, std::chrono::milliseconds(200));
      if (progress && done != nullptr) {
        uint64_t d = done->load(std::memory_order_relaxed);
        lock.unlock();
        progress(d, total);
        lock.lock();
      }
    }
  }
  for (auto& t : pool) t.join();
  if (first_error) return tl::unexpected(std::move(*first_error));
  if (progress && done != nullptr) progress(total, total);
  return {};
}

}  // namespace snapvm
