// An import interrupted by SIGINT, SIGTERM or SIGHUP stops at its next
// step and removes its scratch directory on the way out, instead of dying
// with a half-built tree (set-user-ID files included) left in the store.
//
// While an InterruptWatch lives, those signals are noted rather than
// fatal; the import's loops call check_interrupt(). The caller learns the
// signal from interrupting_signal() and may re-raise it once the import
// has returned (the exit status then says what happened).
#pragma once

#include <signal.h>

#include "base/result.h"

namespace snapvm::image {

class InterruptWatch {
 public:
  InterruptWatch();   // notes SIGINT, SIGTERM and SIGHUP from now on
  ~InterruptWatch();  // restores what was there before
  InterruptWatch(const InterruptWatch&) = delete;
  InterruptWatch& operator=(const InterruptWatch&) = delete;

  static constexpr size_t kSignals = 3;

 private:
  struct sigaction previous_[kSignals];
};

// The signal noted by the last InterruptWatch, 0 if none.
int interrupting_signal();

// An error ("interrupted by SIGTERM") once a signal was noted by the
// InterruptWatch that is alive.
Status check_interrupt();

}  // namespace snapvm::image
