#include "devices/virtio/device_worker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

#include "sandbox/seccomp.h"

namespace snapvm::virtio {

Result<std::unique_ptr<DeviceWorker>> DeviceWorker::create(size_t max_ready) {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return errno_error("epoll_create1");
  UniqueFd epoll(ep);
  int kick = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (kick < 0) return errno_error("eventfd");
  std::unique_ptr<DeviceWorker> w(new DeviceWorker(std::move(epoll), UniqueFd(kick), max_ready));
  SNAPVM_CHECK_OK(w->add(w->kick_fd_.get(), EPOLLIN, kKickToken));
  return w;
}

DeviceWorker::DeviceWorker(UniqueFd epoll, UniqueFd kick, size_t max_ready)
    : epoll_(std::move(epoll)), kick_fd_(std::move(kick)), events_(std::max<size_t>(max_ready, 1)) {
  ready_.reserve(events_.size());
}

DeviceWorker::~DeviceWorker() { stop(); }

Status DeviceWorker::add(int fd, uint32_t events, uint64_t token, const char* what) {
  epoll_event ev{events, {.u64 = token}};
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return errno_error(what);
  return {};
}

void DeviceWorker::modify(int fd, uint32_t events, uint64_t token) {
  epoll_event ev{events, {.u64 = token}};
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
}

void DeviceWorker::remove(int fd) { ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }

void DeviceWorker::start(Client& client) {
  thread_ = std::thread([this, &client] { run(client); });
}

void DeviceWorker::stop() {
  stop_ = true;
  kick();
  if (thread_.joinable()) thread_.join();
}

void DeviceWorker::kick() {
  uint64_t one = 1;
  (void)!::write(kick_fd_.get(), &one, sizeof one);
}

void DeviceWorker::set_paused(bool paused) {
  paused_ = paused;
  // A round that began before the flag was set may still be touching the
  // queues or about to raise an interrupt: wait for it to end, so a
  // snapshot captures the transport and the interrupt controller on the
  // same side of that interrupt.
  if (paused) {
    MutexLock wait_for_round(round_mu_);
  }
  kick();
}

void DeviceWorker::run(Client& client) {
  sandbox::enter_or_die(sandbox::ThreadKind::kDevice);
  while (!stop_.load()) {
    int n = ::epoll_wait(epoll_.get(), events_.data(), static_cast<int>(events_.size()), 1000);
    MutexLock round(round_mu_);
    ready_.clear();
    for (int i = 0; i < n; ++i) {
      if (events_[i].data.u64 == kKickToken) {
        uint64_t drain;
        (void)!::read(kick_fd_.get(), &drain, sizeof drain);
        continue;
      }
      ready_.push_back({events_[i].data.u64, events_[i].events});
    }
    client.round(ready_, !paused_.load());
  }
}

}  // namespace snapvm::virtio
