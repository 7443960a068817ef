#include "image/interrupt.h"

#include <signal.h>
#include <string.h>

#include <atomic>
#include <iterator>

namespace snapvm::image {
namespace {

constexpr int kWatched[] = {SIGINT, SIGTERM, SIGHUP};

std::atomic<int> g_signal{0};
std::atomic<bool> g_watching{false};  // only a running import stops for a signal
static_assert(std::atomic<int>::is_always_lock_free, "set from a signal handler");

void note(int sig) { g_signal.store(sig, std::memory_order_relaxed); }

}  // namespace

static_assert(std::size(kWatched) == InterruptWatch::kSignals);

InterruptWatch::InterruptWatch() {
  g_signal.store(0, std::memory_order_relaxed);
  g_watching.store(true, std::memory_order_relaxed);
  struct sigaction sa {};
  sa.sa_handler = note;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: waiting for mkfs.ext4 returns EINTR and looks
  for (size_t i = 0; i < std::size(kWatched); ++i) ::sigaction(kWatched[i], &sa, &previous_[i]);
}

InterruptWatch::~InterruptWatch() {
  g_watching.store(false, std::memory_order_relaxed);
  for (size_t i = 0; i < std::size(kWatched); ++i) ::sigaction(kWatched[i], &previous_[i], nullptr);
}

int interrupting_signal() { return g_signal.load(std::memory_order_relaxed); }

Status check_interrupt() {
  const int sig = interrupting_signal();
  if (sig == 0 || !g_watching.load(std::memory_order_relaxed)) return {};
  return make_error(ErrorCode::kFailedPrecondition, "interrupted by SIG{}", sigabbrev_np(sig));
}

}  // namespace snapvm::image
