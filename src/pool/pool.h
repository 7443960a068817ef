// A pool of warm clones of one snapshot (snapvm pool serve): N clones kept
// restored and paused, each its own `snapvm restore` process (a crash takes
// one clone, never the pool), handed out on request and refilled in the
// background.
//
// A clone is made unique as it enters the pool: restored, run until its
// agent has taken the host's clock and fresh entropy (clones of one
// snapshot would otherwise share random numbers; this also waits out the
// vsock transport reset of a restore), then paused again. A take only
// resumes it: while paused, the guest's clocks keep following the host's
// (kvmclock, the arm64 virtual counter), so its wall clock is right. Each
// of its relayed TCP ports is published on a host port of its own. A clone whose process ends is
// replaced; the pool never holds more than `max_clones`; a take when none
// is ready waits up to `take_wait` for the refill, then fails with one
// line. Takes wait in a queue, not on their callers' threads: the pool's
// hand-out thread gives each ready clone to the oldest waiting take.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/thread_annotations.h"

namespace snapvm::pool {

struct PoolOptions {
  std::string snapshot;        // the warm snapshot (snapvm bake)
  std::string snapvm_binary;   // what runs `restore` (this executable)
  std::string dir;             // clones' sockets, consoles and logs; made 0700
  std::string allow_dir;       // restore --allow-dir: where the snapshot's disks may lie (the image store)
  std::vector<uint16_t> tcp_ports;  // guest TCP ports published per clone
  size_t ready = 2;            // clones kept restored and paused
  size_t max_clones = 8;       // ready, starting and taken together
  uint64_t max_memory = 0;     // guest RAM of all clones together (0: no limit)
  std::chrono::milliseconds take_wait{30000};
  std::string seccomp = "enforce";  // the clones' restore --seccomp
  // Runs first on the hand-out thread, which resumes clones through their
  // control sockets and stops those that fail (pool serve: the pool's
  // seccomp filter; the refill thread, which starts processes, has none).
  std::function<void()> enter_handout_thread;
};

struct TakenClone {
  std::string id;
  pid_t pid = 0;
  std::string control, vsock, console;
  std::map<uint16_t, std::string> addresses;  // guest TCP port -> host ADDR:PORT
  double resume_ms = 0;   // what the take spent resuming it
  double prepare_ms = 0;  // what the refill spent: restore, clock and entropy, pause
};

struct PoolStats {
  size_t ready = 0, starting = 0, taken = 0;
  uint64_t started = 0, replaced = 0, failed_starts = 0;
  // The refill has nothing left to start: --size clones are ready, or as
  // many clones run as the limits allow (pool serve's readiness).
  bool filled = false;
  struct CloneInfo {
    std::string id, phase;  // "starting", "ready", "taken"
    pid_t pid = 0;
  };
  std::vector<CloneInfo> clones;
};

class Pool {
 public:
  static Result<std::unique_ptr<Pool>> start(PoolOptions options);
  ~Pool();  // stops every clone

  using TakeDone = std::function<void(Result<TakenClone>)>;
  // Asks for a ready clone, waiting up to `wait` (default: the pool's
  // take_wait) without holding the caller: `done` is called exactly once,
  // never under the pool's lock, on the hand-out thread once a clone is
  // resumed or the wait runs out, or at once (or from shutdown()) if the
  // pool is shutting down. Waiting takes are served oldest first. A take
  // whose `wanted` says false when its clone is ready (its client has gone)
  // gets no clone: `done` hears so, and the clone stays for the next.
  // `wanted` runs under the pool's lock: it must not call the pool.
  void take_async(std::optional<std::chrono::milliseconds> wait, TakeDone done,
                  std::function<bool()> wanted = {}) EXCLUDES(mu_);
  // take_async, waited for.
  Result<TakenClone> take(std::optional<std::chrono::milliseconds> wait = std::nullopt) EXCLUDES(mu_);
  Status release(const std::string& id);  // stops a taken clone
  PoolStats stats() const;
  // Fails the waiting takes, and every later one, at once (their `done`
  // runs on the calling thread): the first step of shutdown(), which pool
  // serve takes alone first, so that its clients hear before the clones
  // are stopped (a launch in progress may take a minute to finish).
  void refuse_takes() EXCLUDES(mu_);
  // Refuses takes, then stops every clone and the refill.
  void shutdown();

 private:
  struct Clone {
    std::string id;
    pid_t pid = 0;
    enum class Phase { kStarting, kReady, kTaken } phase = Phase::kStarting;
    std::string control, vsock, console, log;
    std::map<uint16_t, std::string> addresses;
    double prepare_ms = 0;
    bool released = false;  // stopped by release(), not reaped yet
  };
  struct Waiter {
    std::chrono::steady_clock::time_point deadline;
    std::chrono::milliseconds wait;
    TakeDone done;
    std::function<bool()> wanted;  // empty: always
  };
  explicit Pool(PoolOptions options) : o_(std::move(options)) {}
  // (The functions that wait on changed_ hold mu_ through std::unique_lock,
  // which the static analysis cannot follow; PoolTest runs them under
  // ThreadSanitizer.)
  void refill_loop() NO_THREAD_SAFETY_ANALYSIS;
  void handout_loop() NO_THREAD_SAFETY_ANALYSIS;
  // Resumes a clone just taken from ready_ (without the lock: it waits for
  // the clone's control socket).
  Result<TakenClone> resume(TakenClone t) EXCLUDES(mu_);
  // Why a take that waited `wait` got no clone.
  std::string no_clone_reason(std::chrono::milliseconds wait) const REQUIRES(mu_);
  void reap_loop() NO_THREAD_SAFETY_ANALYSIS;
  // Starts one clone's process and waits until it is restored (paused).
  Result<Clone> launch(const std::string& id);
  void stop_clone(pid_t pid) EXCLUDES(mu_);
  void stop_clone_locked(pid_t pid) REQUIRES(mu_);

  const PoolOptions o_;
  mutable Mutex mu_;
  std::condition_variable_any changed_;  // a clone became ready or ended, a take waits, or the pool is stopping
  std::map<std::string, Clone> clones_ GUARDED_BY(mu_);
  std::deque<std::string> ready_ GUARDED_BY(mu_);  // oldest first
  std::deque<Waiter> waiters_ GUARDED_BY(mu_);     // oldest first
  size_t starting_ GUARDED_BY(mu_) = 0;
  uint64_t next_id_ GUARDED_BY(mu_) = 0;
  PoolStats counters_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  bool refusing_takes_ GUARDED_BY(mu_) = false;
  std::set<pid_t> exited_unclaimed_ GUARDED_BY(mu_);  // reaped before launch() recorded them
  std::string last_error_ GUARDED_BY(mu_);  // of the last clone that failed to start
  uint64_t clone_memory_ GUARDED_BY(mu_) = 0;  // one clone's guest RAM, once a clone has said
  // How many clones max_clones and max_memory allow.
  size_t clone_limit() const REQUIRES(mu_);
  std::thread refill_, reaper_, handout_;
};

}  // namespace snapvm::pool
