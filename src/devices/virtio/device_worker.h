// The thread of a virtio device that serves host file descriptors besides
// its queues (virtio-net's tap, vsock's sockets): one epoll set, a kick
// eventfd that wakes it, and the pause barrier that snapshots rely on.
// Cloud Hypervisor's EpollHelper has the same job; the device says what a
// round does (DeviceWorker::Client), the worker when one runs.
//
// The thread, started by start(), enters the device threads' seccomp
// filter (sandbox::ThreadKind::kDevice) and then, until stop():
//   1. waits on the epoll set (one second at the most),
//   2. takes the round lock, drains the kick,
//   3. calls client.round() with the tokens of the fds that polled ready and
//      whether the device runs (false while paused),
//   4. lets go of the round lock.
// A round runs even with nothing ready (a kick, the timeout), so a device
// can re-check its state every time it is woken.
//
// Pause barrier: set_paused(true) returns only when no round is under way
// that could have seen the device running, and every round after it sees
// `running == false` until set_paused(false). A paused device still serves
// its host fds (a level-triggered fd must be answered or disarmed, or the
// thread would spin) but must not touch its queues or guest memory, nor
// raise interrupts: the VM is being captured.
//
// Locks: round_mutex() is held by the thread across each whole round,
// interrupts included. A device takes its own lock inside it
// (ACQUIRED_AFTER(worker_->round_mutex())), and state that only rounds
// touch may be GUARDED_BY(worker_->round_mutex()). paused_ is written by
// set_paused() and read once per round with the round lock held.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include <sys/epoll.h>

#include "base/result.h"
#include "base/thread_annotations.h"
#include "base/unique_fd.h"

namespace snapvm::virtio {

class DeviceWorker {
 public:
  // A registered fd that polled ready: the token it was added with and
  // the epoll events it reported.
  struct Ready {
    uint64_t token;
    uint32_t events;
  };

  // What the device does on the worker thread.
  class Client {
   public:
    // One round, called with the worker's round_mutex() held: `ready` lists
    // the registered fds that polled ready (the kick is the worker's own and
    // never among them); `running` is false while the device is paused.
    virtual void round(std::span<const Ready> ready, bool running) = 0;

   protected:
    ~Client() = default;
  };

  // Reserved for the kick; devices choose every other token.
  static constexpr uint64_t kKickToken = ~uint64_t{0};

  // `max_ready`: how many ready fds one round takes at the most (the rest
  // wait for the next round).
  static Result<std::unique_ptr<DeviceWorker>> create(size_t max_ready);
  ~DeviceWorker();  // stop()
  DeviceWorker(const DeviceWorker&) = delete;
  DeviceWorker& operator=(const DeviceWorker&) = delete;

  // The epoll set: called before start() or from a round (on the worker
  // thread: vCPU threads' seccomp filters have no epoll_ctl). Closing an fd
  // takes it out of the set as well, from any thread.
  // `what` names the call in the error.
  Status add(int fd, uint32_t events, uint64_t token, const char* what = "epoll_ctl");
  void modify(int fd, uint32_t events, uint64_t token);
  void remove(int fd);

  // Starts the thread; `client` must outlive stop().
  void start(Client& client);
  // Ends the thread after the round under way (if any) and one more at the
  // most; the device calls it in its destructor before its state goes.
  void stop();
  // Wakes the thread for a round (any thread; the worker drains it).
  void kick();

  // The pause barrier (see above); from any thread but the worker's.
  void set_paused(bool paused);
  bool paused() const { return paused_.load(); }

  Mutex& round_mutex() RETURN_CAPABILITY(round_mu_) { return round_mu_; }

 private:
  DeviceWorker(UniqueFd epoll, UniqueFd kick, size_t max_ready);
  void run(Client& client);

  const UniqueFd epoll_;
  const UniqueFd kick_fd_;
  // Sized before the thread starts (no allocation on it); worker thread only.
  std::vector<epoll_event> events_;
  std::vector<Ready> ready_;

  // Held by the thread for a whole round: set_paused(true) takes it to know
  // that no round is under way.
  Mutex round_mu_;
  std::atomic<bool> paused_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace snapvm::virtio
