// Clang's thread-safety analysis (-Wthread-safety): which lock guards which
// data, checked at compile time by the clang builds (fuzzing), documentation
// elsewhere. libstdc++'s std::mutex carries no annotations, so locks that
// guard annotated data are snapvm::Mutex, a std::mutex that does.
#pragma once

#include <mutex>

#if defined(__clang__)
#define SNAPVM_TSA(x) __attribute__((x))
#else
#define SNAPVM_TSA(x)
#endif

#define CAPABILITY(x) SNAPVM_TSA(capability(x))
#define SCOPED_CAPABILITY SNAPVM_TSA(scoped_lockable)
#define GUARDED_BY(x) SNAPVM_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) SNAPVM_TSA(pt_guarded_by(x))
#define REQUIRES(...) SNAPVM_TSA(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) SNAPVM_TSA(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) SNAPVM_TSA(acquire_capability(__VA_ARGS__))
#define RELEASE(...) SNAPVM_TSA(release_capability(__VA_ARGS__))
#define RETURN_CAPABILITY(x) SNAPVM_TSA(lock_returned(x))
#define ACQUIRED_AFTER(...) SNAPVM_TSA(acquired_after(__VA_ARGS__))
#define NO_THREAD_SAFETY_ANALYSIS SNAPVM_TSA(no_thread_safety_analysis)

namespace snapvm {

class CAPABILITY("mutex") Mutex {
 public:
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() SNAPVM_TSA(try_acquire_capability(true)) { return mu_.try_lock(); }
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace snapvm
