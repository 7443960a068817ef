#include "pool/line_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <exception>
#include <thread>

#include <fmt/format.h>

namespace snapvm::pool {
namespace {

using Clock = std::chrono::steady_clock;

// Milliseconds left until `deadline`, for poll(); 0 once it has passed.
int ms_until(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 60'000));
}

// Sends all of `data` unless the peer stops reading until `deadline`.
void send_until(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return;
    pollfd p{fd, POLLOUT, 0};
    int wait = ms_until(deadline);
    if (wait == 0 || ::poll(&p, 1, wait) <= 0) return;
  }
}

}  // namespace

LineServer::LineServer(UniqueFd listener, Handler handler, Refusal refusal, LineServerLimits limits)
    : listener_(std::move(listener)),
      handler_(std::move(handler)),
      refusal_(std::move(refusal)),
      limits_(limits),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

LineServer::~LineServer() {
  std::unique_lock<Mutex> lock(mu_);
  // Connections still waiting for a request end now; those being answered
  // finish their answer (the caller has made waiting handlers return).
  for (auto& c : connections_) {
    if (c.reading) ::shutdown(c.fd, SHUT_RD);
  }
  all_done_.wait(lock, [this]() NO_THREAD_SAFETY_ANALYSIS { return connections_.empty(); });
}

void LineServer::stop() {
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

void LineServer::serve(int stop_fd) {
  for (;;) {
    pollfd fds[3] = {{listener_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}, {stop_fd, POLLIN, 0}};
    if (::poll(fds, stop_fd >= 0 ? 3 : 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents || (stop_fd >= 0 && fds[2].revents)) return;
    if (!(fds[0].revents & POLLIN)) continue;
    int c = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) admit(UniqueFd(c));
  }
}

void LineServer::admit(UniqueFd conn) {
  MutexLock lock(mu_);
  size_t open = 0;
  for (const auto& c : connections_) open += c.evicted ? 0 : 1;
  if (open >= limits_.max_connections) {
    // The oldest connection still without a complete request makes way.
    auto waiting = std::find_if(connections_.begin(), connections_.end(),
                                [](const Connection& c) { return c.reading && !c.evicted; });
    if (waiting == connections_.end()) {
      std::string busy = refusal_("busy: every connection is being answered (too many requests at once)") + "\n";
      (void)!::send(conn.get(), busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      return;
    }
    waiting->evicted = true;
    ::shutdown(waiting->fd, SHUT_RD);  // its thread sees the end of input at once
  }
  auto self = connections_.insert(connections_.end(), Connection{conn.release(), Clock::now()});
  std::thread([this, self] { run(self); }).detach();
}

void LineServer::run(std::list<Connection>::iterator self) {
  int fd;
  Clock::time_point deadline;
  {
    MutexLock lock(mu_);
    fd = self->fd;
    deadline = self->accepted + limits_.request_deadline;
  }
  std::string line;
  bool timed_out = false;
  char buf[512];
  while (line.find('\n') == std::string::npos && line.size() <= limits_.max_request_bytes) {
    pollfd p{fd, POLLIN, 0};
    int wait = ms_until(deadline);
    if (wait == 0 || ::poll(&p, 1, wait) == 0) {
      timed_out = true;
      break;
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
  }
  bool evicted;
  {
    MutexLock lock(mu_);
    self->reading = false;
    evicted = self->evicted;
  }
  const size_t newline = line.find('\n');
  std::string answer;
  bool stop_serving = false;
  if (evicted) {
    answer = refusal_("closed to make way for a newer connection: no complete request came on this one");
  } else if (timed_out) {
    answer = refusal_(fmt::format("no complete request line within {} ms", limits_.request_deadline.count()));
  } else if (newline == std::string::npos && line.size() > limits_.max_request_bytes) {
    answer = refusal_(fmt::format("request over {} bytes", limits_.max_request_bytes));
  } else if (newline != std::string::npos || !line.empty()) {
    // A line without its newline at the end of input is still a request.
    try {
      answer = handler_(std::string_view(line).substr(0, newline), stop_serving);
    } catch (const std::exception& e) {
      answer = refusal_(std::string("the request failed: ") + e.what());
    }
  }
  if (!answer.empty()) {
    answer += '\n';
    // Evicted or late: one try, never a wait. Answered: the deadline again.
    auto send_deadline = evicted || timed_out ? Clock::now() : Clock::now() + limits_.request_deadline;
    send_until(fd, answer, send_deadline);
  }
  if (stop_serving) stop();
  MutexLock lock(mu_);
  ::close(fd);
  connections_.erase(self);
  all_done_.notify_all();  // under the lock: the destructor cannot return before this thread lets go of it
}

}  // namespace snapvm::pool
