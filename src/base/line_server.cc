#include "base/line_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <utility>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include "base/thread_annotations.h"

namespace snapvm {

// Answers given on any thread wait here until the serving thread takes
// them; the eventfd wakes it. Shared with every Reply, weakly, so that a
// Reply outliving the server finds nothing and a Reply being sent while
// the server goes keeps what it writes to alive.
struct LineServer::Mailbox {
  const UniqueFd wake{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
  Mutex mu;
  struct Line {
    uint64_t ticket;
    std::string text;
    bool answer;  // false: a streamed line, the answer still to come
  };
  std::vector<Line> lines GUARDED_BY(mu);
  // Tickets whose connection closed before its answer: a Reply can tell its
  // answer is no longer wanted (the pool then keeps the clone it would have
  // handed out). One per request whose answer has not come yet, so bounded.
  std::unordered_set<uint64_t> abandoned GUARDED_BY(mu);
  bool stop GUARDED_BY(mu) = false;

  void ring() const {
    uint64_t one = 1;
    (void)!::write(wake.get(), &one, sizeof one);
  }
};

namespace {

// An answer is small and the socket's buffer empty as a rule, so a send that
// does not finish at once is left to poll() rather than waited for.
constexpr int kSendFlags = MSG_NOSIGNAL | MSG_DONTWAIT;
// Accepts per wake-up, so that a flood of connections does not starve the
// ones already open.
constexpr int kAcceptBurst = 64;
// When accept() runs out of descriptors the listener stays readable: poll
// it again only after this, not in a busy loop.
constexpr std::chrono::milliseconds kAcceptBackoff{100};
// Without an eventfd (descriptors ran out when the server was made) answers
// from other threads are picked up this often.
constexpr int kNoWakeFdPollMs = 50;

}  // namespace

bool LineServer::Reply::wanted() const {
  auto mailbox = mailbox_.lock();
  if (!mailbox) return false;  // the server is gone
  MutexLock lock(mailbox->mu);
  return !mailbox->abandoned.contains(ticket_);
}

void LineServer::Reply::send(std::string line) const {
  auto mailbox = mailbox_.lock();
  if (!mailbox) return;  // the server is gone
  {
    MutexLock lock(mailbox->mu);
    mailbox->lines.push_back({ticket_, std::move(line), true});
  }
  mailbox->ring();
}

void LineServer::Reply::stream(std::string line) const {
  auto mailbox = mailbox_.lock();
  if (!mailbox) return;
  {
    MutexLock lock(mailbox->mu);
    mailbox->lines.push_back({ticket_, std::move(line), false});
  }
  mailbox->ring();
}

LineServer::LineServer(UniqueFd listener, Handler handler, Refusal refusal, LineServerOptions options)
    : listener_(std::move(listener)),
      handler_(std::move(handler)),
      refusal_(std::move(refusal)),
      o_(std::move(options)),
      mailbox_(std::make_shared<Mailbox>()) {}

LineServer::~LineServer() { close_all(); }

void LineServer::stop() {
  {
    MutexLock lock(mailbox_->mu);
    mailbox_->stop = true;
  }
  mailbox_->ring();
}

void LineServer::serve(int stop_fd) {
  std::vector<pollfd> fds;
  std::vector<Connection*> polled;
  for (;;) {
    const auto now = Clock::now();
    fds.clear();
    polled.clear();
    fds.push_back({mailbox_->wake.get(), POLLIN, 0});
    fds.push_back({stop_fd, POLLIN, 0});  // poll() skips a negative fd
    fds.push_back({now >= accept_paused_until_ ? listener_.get() : -1, POLLIN, 0});
    for (auto& [id, c] : conns_) {
      // Output pending: only POLLOUT, so a peer that does not read is not
      // given more work. Answering: nothing but a hang-up (always reported).
      short events = 0;
      if (!c.out.empty()) {
        events = POLLOUT;
      } else if (c.state == Connection::State::kReading && !c.input_ended) {
        events = POLLIN;
      }
      fds.push_back({c.fd.get(), events, 0});
      polled.push_back(&c);
    }
    int n = ::poll(fds.data(), fds.size(), poll_timeout_ms(now));
    if (n < 0 && errno != EINTR) return;  // bad arguments: nothing to retry
    if (n > 0) {
      if (fds[0].revents) {
        uint64_t count;
        (void)!::read(mailbox_->wake.get(), &count, sizeof count);
      }
      for (size_t i = 0; i < polled.size(); ++i) {
        const short r = fds[i + 3].revents;
        Connection& c = *polled[i];
        if (r == 0 || c.closed) continue;
        if (r & POLLOUT) {
          flush(c);
        } else if (r & POLLIN) {
          on_readable(c);
        } else {
          c.closed = true;  // hung up or failed while its answer was on its way: it is dropped
        }
      }
      if (fds[2].revents) accept_new();
    }
    // Answers (and the requests that buffered lines make once an answer is
    // sent), deadlines, then stop: an answer given just before stop() (the
    // pool's `stop` request) has had its one try at being sent.
    bool dispatched;
    do {
      deliver_answers();
      dispatched = false;
      for (auto& [id, c] : conns_) dispatched |= advance(c);
    } while (dispatched);
    check_deadlines(Clock::now());
    std::vector<uint64_t> abandoned;  // closed while their answer was being made
    std::erase_if(conns_, [&abandoned](const auto& entry) {
      const Connection& c = entry.second;
      if (c.closed && c.state == Connection::State::kAnswering) abandoned.push_back(c.ticket);
      return c.closed;
    });
    if (!abandoned.empty()) {
      MutexLock lock(mailbox_->mu);
      mailbox_->abandoned.insert(abandoned.begin(), abandoned.end());
    }
    bool stopping = fds[1].revents != 0;
    {
      MutexLock lock(mailbox_->mu);
      stopping |= mailbox_->stop;
    }
    if (stopping) return;
  }
}

void LineServer::close_all() {
  deliver_answers();
  conns_.clear();
}

int LineServer::poll_timeout_ms(Clock::time_point now) const {
  std::optional<Clock::time_point> next;
  auto earliest = [&](Clock::time_point t) { next = next ? std::min(*next, t) : t; };
  if (now < accept_paused_until_) earliest(accept_paused_until_);
  for (const auto& [id, c] : conns_) {
    if (!c.out.empty()) {
      earliest(c.send_by);
    } else if (c.state == Connection::State::kReading && o_.request_deadline) {
      earliest(c.waiting_since + *o_.request_deadline);
    }
  }
  const int idle = mailbox_->wake.valid() ? -1 : kNoWakeFdPollMs;
  if (!next) return idle;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - now).count();
  left = std::clamp<int64_t>(left, 0, 60'000);
  return idle < 0 ? static_cast<int>(left) : std::min(idle, static_cast<int>(left));
}

void LineServer::accept_new() {
  for (int i = 0; i < kAcceptBurst; ++i) {
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      admit(UniqueFd(fd));
      continue;
    }
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      accept_paused_until_ = Clock::now() + kAcceptBackoff;
    }
    return;  // none left (EAGAIN), or one that gave up while queued: the next poll says
  }
}

void LineServer::admit(UniqueFd fd) {
  size_t open = 0;
  for (const auto& [id, c] : conns_) open += c.closed ? 0 : 1;
  if (open >= o_.max_connections) {
    Connection* idle = nullptr;
    if (o_.evict_idle_at_limit) {
      for (auto& [id, c] : conns_) {
        if (!c.closed && c.state == Connection::State::kReading && c.out.empty()) {
          idle = &c;  // the oldest still without a request in hand
          break;
        }
      }
    }
    if (idle == nullptr) {
      std::string busy = refusal_(o_.busy_reason) + "\n";
      (void)!::send(fd.get(), busy.data(), busy.size(), kSendFlags);
      return;
    }
    refuse(*idle, "closed to make way for a newer connection: no complete request came on this one");
  }
  Connection c;
  c.fd = std::move(fd);
  c.waiting_since = Clock::now();
  conns_.emplace(next_id_++, std::move(c));
}

void LineServer::on_readable(Connection& c) {
  char chunk[4096];
  ssize_t n = ::recv(c.fd.get(), chunk, sizeof chunk, MSG_DONTWAIT);
  if (n < 0) {
    if (errno != EAGAIN && errno != EINTR) c.closed = true;
    return;
  }
  if (n == 0) {
    c.input_ended = true;
  } else {
    c.in.append(chunk, static_cast<size_t>(n));
  }
}

bool LineServer::advance(Connection& c) {
  // One request at a time per connection, and none while its last answer
  // is still being sent: a peer that does not read gets no more work done.
  if (c.closed || c.state != Connection::State::kReading || !c.out.empty()) return false;
  const size_t newline = c.in.find('\n');
  const size_t line_bytes = newline == std::string::npos ? c.in.size() : newline;
  if (line_bytes > o_.max_request_bytes) {
    refuse(c, fmt::format("request over {} bytes", o_.max_request_bytes));
    return false;
  }
  if (newline != std::string::npos) {
    std::string line = c.in.substr(0, newline);
    c.in.erase(0, newline + 1);
    dispatch(c, std::move(line));
    return true;
  }
  if (!c.input_ended) return false;
  if (o_.one_request_per_connection && !c.in.empty()) {
    dispatch(c, std::exchange(c.in, {}));  // a line without its newline at the end of input
    return true;
  }
  c.closed = true;  // nothing more will come
  return false;
}

void LineServer::dispatch(Connection& c, std::string line) {
  c.state = Connection::State::kAnswering;
  c.ticket = next_ticket_++;
  const Reply reply(mailbox_, c.ticket);
  try {
    handler_(line, reply);
  } catch (const std::exception& e) {
    reply.send(refusal_(std::string("the request failed: ") + e.what()));  // dropped if it had answered
  }
}

void LineServer::deliver_answers() {
  std::vector<Mailbox::Line> lines;
  {
    MutexLock lock(mailbox_->mu);
    lines.swap(mailbox_->lines);
    // An answer settles its ticket; a streamed line does not.
    for (const auto& l : lines) {
      if (l.answer) mailbox_->abandoned.erase(l.ticket);
    }
  }
  for (auto& l : lines) {
    // Tickets are never reused: a second answer, or one for a connection
    // that has closed, finds no connection waiting for it.
    for (auto& [id, c] : conns_) {
      if (!c.closed && c.state == Connection::State::kAnswering && c.ticket == l.ticket) {
        if (l.answer) {
          answer(c, std::move(l.text));
        } else {
          stream_to(c, std::move(l.text));
        }
        break;
      }
    }
  }
}

void LineServer::stream_to(Connection& c, std::string line) {
  if (c.out.size() + line.size() + 1 > kMaxStreamBacklog) {
    c.closed = true;  // it reads far slower than the stream is written
    return;
  }
  if (c.out.empty()) c.send_by = Clock::now() + o_.send_deadline;
  c.out += line;
  c.out += '\n';
  flush(c);
}

void LineServer::answer(Connection& c, std::string line) {
  c.state = Connection::State::kReading;
  c.waiting_since = Clock::now();
  c.close_when_sent = o_.one_request_per_connection;
  // Streamed lines may still be waiting: the answer goes after them.
  if (c.out.empty()) c.send_by = c.waiting_since + o_.send_deadline;
  c.out += line;
  c.out += '\n';
  flush(c);
}

void LineServer::flush(Connection& c) {
  while (!c.out.empty()) {
    ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), kSendFlags);
    if (n > 0) {
      c.out.erase(0, static_cast<size_t>(n));
      // A peer that takes its bytes, however slowly, keeps its connection
      // (an event stream's reader); one that takes none is dropped.
      c.send_by = Clock::now() + o_.send_deadline;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      return;  // poll() says when it takes more (or the send deadline passes)
    } else {
      c.closed = true;  // the peer is gone
      return;
    }
  }
  if (c.close_when_sent) c.closed = true;
}

void LineServer::refuse(Connection& c, std::string_view why) {
  // One try, never a wait: the connection is being cut for holding too much.
  c.out += refusal_(why) + "\n";
  (void)!::send(c.fd.get(), c.out.data(), c.out.size(), kSendFlags);
  c.closed = true;
}

void LineServer::check_deadlines(Clock::time_point now) {
  for (auto& [id, c] : conns_) {
    if (c.closed) continue;
    if (!c.out.empty()) {
      if (now >= c.send_by) c.closed = true;  // the peer does not read its answer
    } else if (c.state == Connection::State::kReading && o_.request_deadline &&
               now >= c.waiting_since + *o_.request_deadline) {
      refuse(c, fmt::format("no complete request line within {} ms", o_.request_deadline->count()));
    }
  }
}

}  // namespace snapvm
