// The shared line server (base/line_server.h) of the control socket and the
// pool's socket, with stand-in handlers: lines of one connection answered in
// order, answers given later from other threads, the limits (request size,
// request deadline, connections, a peer that does not read), and answers
// that arrive too late: twice, after their client left, after the server.
#include "base/line_server.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/unix_socket.h"
#include "test_util.h"

namespace snapvm {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds limit = 20s) {
  for (auto until = Clock::now() + limit; Clock::now() < until;) {
    if (done()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return done();
}

// Replies kept by a handler, to be given later by the test.
class Pending {
 public:
  void add(LineServer::Reply r) {
    std::lock_guard lock(mu_);
    replies_.push_back(std::move(r));
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return replies_.size();
  }
  LineServer::Reply at(size_t i) {
    std::lock_guard lock(mu_);
    return replies_.at(i);
  }

 private:
  std::mutex mu_;
  std::vector<LineServer::Reply> replies_;
};

class LineServerTest : public ::testing::Test {
 protected:
  void start(LineServerOptions options, LineServer::Handler handler = nullptr) {
    if (!handler) handler = [](std::string_view line, const LineServer::Reply& r) { r.send("ok:" + std::string(line)); };
    auto listener = listen_unix(path_, 128, 0600, "test socket");
    ASSERT_TRUE(listener) << listener.error().describe();
    server_ = std::make_unique<LineServer>(
        std::move(*listener), handler, [](std::string_view why) { return "refused:" + std::string(why); }, options);
    thread_ = std::thread([this] { server_->serve(-1); });
  }
  void stop_serving() {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
  }
  void TearDown() override {
    stop_serving();
    server_.reset();
  }
  UniqueFd connect() {
    auto c = connect_unix(path_);
    EXPECT_TRUE(c) << c.error().describe();
    return c ? std::move(*c) : UniqueFd();
  }
  // Everything the server sends until it closes (or `limit` passes).
  static std::string read_all(int fd, std::chrono::milliseconds limit = 10s) {
    std::string out;
    const auto until = Clock::now() + limit;
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return out + "<still open>";
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  // One line (with its newline), or what came before the connection closed
  // or `limit` passed.
  static std::string read_line(int fd, std::chrono::milliseconds limit = 10s) {
    std::string out;
    const auto until = Clock::now() + limit;
    while (out.empty() || out.back() != '\n') {
      pollfd p{fd, POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return out + "<still open>";
      char c;
      ssize_t n = ::recv(fd, &c, 1, 0);
      if (n <= 0) return out + "<closed>";
      out += c;
    }
    return out;
  }
  static void send_text(int fd, const std::string& s) {
    ASSERT_EQ(::send(fd, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }
  // For a connection the server may have refused and closed already.
  static bool try_send(int fd, const std::string& s) {
    return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }
  // True once the server has closed its end: the peer sees a hang-up.
  static bool closed_by_server(int fd, std::chrono::milliseconds limit) {
    pollfd p{fd, 0, 0};
    return ::poll(&p, 1, static_cast<int>(limit.count())) == 1 && (p.revents & POLLHUP);
  }
  static LineServerOptions many(size_t max_connections = 16) {
    LineServerOptions o;
    o.max_request_bytes = 64 * 1024;
    o.max_connections = max_connections;
    o.busy_reason = "too many clients";
    return o;
  }
  static LineServerOptions one_each(size_t max_request_bytes, size_t max_connections,
                                    std::chrono::milliseconds deadline) {
    LineServerOptions o;
    o.max_request_bytes = max_request_bytes;
    o.max_connections = max_connections;
    o.request_deadline = deadline;
    o.send_deadline = deadline;
    o.one_request_per_connection = true;
    o.evict_idle_at_limit = true;
    return o;
  }

  test::TempDir dir_;
  std::string path_ = dir_.file("line.sock");
  std::unique_ptr<LineServer> server_;
  std::thread thread_;
};

// Lines sent together are answered one at a time, in order, even when some
// answers come later from other threads and out of order.
TEST_F(LineServerTest, ManyLinesOnOneConnectionAreAnsweredInOrder) {
  auto helpers = std::make_shared<std::vector<std::thread>>();
  auto helpers_mu = std::make_shared<std::mutex>();
  start(many(), [helpers, helpers_mu](std::string_view line, const LineServer::Reply& r) {
    std::string answer = "ok:" + std::string(line);
    if (std::stoi(std::string(line)) % 3 != 0) return r.send(answer);
    std::lock_guard lock(*helpers_mu);
    helpers->emplace_back([r, answer] {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::random_device()() % 5));
      r.send(answer);
    });
  });
  UniqueFd c = connect();
  std::string all, expected;
  for (int i = 0; i < 300; ++i) {
    all += std::to_string(i) + "\n";
    expected += "ok:" + std::to_string(i) + "\n";
  }
  send_text(c.get(), all);
  std::string got;
  while (got.size() < expected.size()) {
    std::string line = read_line(c.get(), 5s);
    got += line;
    if (line.back() != '\n') break;  // closed, or an answer that never came
  }
  stop_serving();
  {
    std::lock_guard lock(*helpers_mu);
    for (auto& t : *helpers) t.join();
  }
  EXPECT_EQ(got, expected);
}

// The pool's take: the handler returns at once and a thread answers later;
// the server serves other connections meanwhile.
TEST_F(LineServerTest, ADeferredAnswerFromAnotherThreadArrives) {
  Pending pending;
  start(many(), [&](std::string_view line, const LineServer::Reply& r) {
    if (line == "later") return pending.add(r);
    r.send("ok:" + std::string(line));
  });
  UniqueFd waiting = connect(), other = connect();
  send_text(waiting.get(), "later\n");
  ASSERT_TRUE(wait_for([&] { return pending.size() == 1; }));
  send_text(other.get(), "now\n");
  EXPECT_EQ(read_line(other.get()), "ok:now\n");
  std::thread([r = pending.at(0)] { r.send("done later"); }).join();
  EXPECT_EQ(read_line(waiting.get()), "done later\n");
  // The connection serves its next request as usual.
  send_text(waiting.get(), "again\n");
  EXPECT_EQ(read_line(waiting.get()), "ok:again\n");
}

// The control socket's event stream: lines streamed from another thread
// arrive in order before the answer that ends the stream, and the
// connection then serves requests again; streamed lines for a connection
// that has left go nowhere, and its Reply says it is no longer wanted.
TEST_F(LineServerTest, StreamedLinesArriveInOrderBeforeTheAnswerThatEndsThem) {
  Pending pending;
  start(many(), [&](std::string_view line, const LineServer::Reply& r) {
    if (line == "subscribe") {
      r.stream("subscribed");
      return pending.add(r);
    }
    r.send("ok:" + std::string(line));
  });
  UniqueFd c = connect();
  send_text(c.get(), "subscribe\n");
  EXPECT_EQ(read_line(c.get()), "subscribed\n");
  ASSERT_TRUE(wait_for([&] { return pending.size() == 1; }));
  std::thread([r = pending.at(0)] {
    for (int i = 0; i < 100; ++i) r.stream("event " + std::to_string(i));
  }).join();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(read_line(c.get()), "event " + std::to_string(i) + "\n");
  // While streaming, the next request waits for the stream's end.
  send_text(c.get(), "after\n");
  EXPECT_EQ(read_line(c.get(), 300ms), "<still open>");
  pending.at(0).send("end");
  pending.at(0).stream("too late");  // after the answer: not this connection's any more
  EXPECT_EQ(read_line(c.get()), "end\n");
  EXPECT_EQ(read_line(c.get()), "ok:after\n");

  UniqueFd gone = connect();
  send_text(gone.get(), "subscribe\n");
  EXPECT_EQ(read_line(gone.get()), "subscribed\n");
  ASSERT_TRUE(wait_for([&] { return pending.size() == 2; }));
  gone = UniqueFd();
  ASSERT_TRUE(wait_for([&] { return !pending.at(1).wanted(); }));
  pending.at(1).stream("nobody");  // dropped, and the server goes on
  UniqueFd next = connect();
  send_text(next.get(), "hello\n");
  EXPECT_EQ(read_line(next.get()), "ok:hello\n");
}

// A subscriber that never reads is dropped once kMaxStreamBacklog bytes
// wait for it, rather than the server holding them without bound.
TEST_F(LineServerTest, ASubscriberThatNeverReadsIsDroppedAtTheBacklogLimit) {
  Pending pending;
  start(many(), [&](std::string_view, const LineServer::Reply& r) { pending.add(r); });
  UniqueFd c = connect();
  int small = 4096;
  ASSERT_EQ(::setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  send_text(c.get(), "subscribe\n");
  ASSERT_TRUE(wait_for([&] { return pending.size() == 1; }));
  const std::string line(1000, 'x');
  // More than the backlog and both socket buffers can hold, as one burst.
  for (size_t sent = 0; sent < kMaxStreamBacklog + (4 << 20); sent += line.size() + 1) pending.at(0).stream(line);
  EXPECT_TRUE(wait_for([&] { return !pending.at(0).wanted(); }, 10s));
}

// Only the first answer counts: a second one is not taken as the answer to
// the connection's next request.
TEST_F(LineServerTest, AnAnswerGivenTwiceIsSentOnce) {
  Pending pending;
  start(many(), [&](std::string_view line, const LineServer::Reply& r) {
    if (line == "later") return pending.add(r);
    r.send("ok:" + std::string(line));
  });
  UniqueFd c = connect();
  send_text(c.get(), "later\n");
  ASSERT_TRUE(wait_for([&] { return pending.size() == 1; }));
  pending.at(0).send("first");
  pending.at(0).send("second");
  EXPECT_EQ(read_line(c.get()), "first\n");
  send_text(c.get(), "next\n");
  EXPECT_EQ(read_line(c.get()), "ok:next\n");
}

// A client that says nothing, or half a line, or a byte now and then, holds
// up no other (the control socket has no request deadline).
TEST_F(LineServerTest, SilentAndTricklingConnectionsDoNotHoldAnotherClient) {
  start(many());
  UniqueFd silent = connect(), half = connect(), trickler = connect();
  send_text(half.get(), "{\"op\":");
  std::atomic<bool> done{false};
  std::thread trickle([&] {
    while (!done) {
      if (::send(trickler.get(), "x", 1, MSG_NOSIGNAL) != 1) return;
      std::this_thread::sleep_for(20ms);
    }
  });
  for (int i = 0; i < 20; ++i) {
    UniqueFd c = connect();
    send_text(c.get(), "status\n");
    EXPECT_EQ(read_line(c.get(), 2s), "ok:status\n") << "client " << i;
  }
  done = true;
  trickle.join();
  // The idle ones are still served: no deadline closed them.
  send_text(half.get(), "\"info\"}\n");
  EXPECT_EQ(read_line(half.get()), "ok:{\"op\":\"info\"}\n");
  send_text(silent.get(), "hello\n");
  EXPECT_EQ(read_line(silent.get()), "ok:hello\n");
}

TEST_F(LineServerTest, AnOverlongRequestGetsOneErrorLine) {
  LineServerOptions o = many();
  o.max_request_bytes = 100;
  start(o);
  UniqueFd partial = connect(), whole = connect();
  send_text(partial.get(), std::string(101, 'x'));  // no newline yet, already too long
  EXPECT_EQ(read_all(partial.get()), "refused:request over 100 bytes\n");
  send_text(whole.get(), "short\n" + std::string(300, 'y') + "\nnever\n");
  EXPECT_EQ(read_all(whole.get()), "ok:short\nrefused:request over 100 bytes\n");
  // Exactly the limit is a request.
  UniqueFd fits = connect();
  send_text(fits.get(), std::string(100, 'z') + "\n");
  EXPECT_EQ(read_line(fits.get()), "ok:" + std::string(100, 'z') + "\n");
}

TEST_F(LineServerTest, AHandlerThatThrowsGetsARefusalLine) {
  start(many(), [](std::string_view line, const LineServer::Reply& r) {
    if (line == "bad") throw std::runtime_error("no such thing");
    r.send("ok:" + std::string(line));
  });
  UniqueFd c = connect();
  send_text(c.get(), "bad\ngood\n");
  EXPECT_EQ(read_line(c.get()), "refused:the request failed: no such thing\n");
  EXPECT_EQ(read_line(c.get()), "ok:good\n");
}

// The control socket's limit: a newcomer is refused with one line; the
// connections already open are served on.
TEST_F(LineServerTest, AtTheConnectionLimitANewcomerIsRefused) {
  start(many(2));
  UniqueFd a = connect(), b = connect();
  send_text(a.get(), "1\n");
  send_text(b.get(), "2\n");
  EXPECT_EQ(read_line(a.get()), "ok:1\n");  // both accepted
  EXPECT_EQ(read_line(b.get()), "ok:2\n");
  UniqueFd c = connect();
  EXPECT_EQ(read_all(c.get()), "refused:too many clients\n");
  send_text(a.get(), "3\n");
  EXPECT_EQ(read_line(a.get()), "ok:3\n");
  // A client that leaves makes room.
  b.reset();
  ASSERT_TRUE(wait_for([&] {
    UniqueFd d = connect();
    return try_send(d.get(), "4\n") && read_line(d.get(), 2s) == "ok:4\n";
  }));
}

// The pool's limit: the whole request line within the deadline (a byte
// every 100 ms used to keep a connection, and its slot, for as long as the
// client liked).
TEST_F(LineServerTest, AClientTricklingItsRequestIsCutAtTheDeadline) {
  start(one_each(4096, 64, 500ms));
  UniqueFd c = connect();
  std::atomic<bool> done{false};
  std::thread trickle([&] {
    for (int i = 0; i < 100 && !done; ++i) {
      if (::send(c.get(), "x", 1, MSG_NOSIGNAL) != 1) return;
      std::this_thread::sleep_for(100ms);
    }
  });
  const auto t0 = Clock::now();
  std::string reply = read_all(c.get());
  const auto took = Clock::now() - t0;
  done = true;
  trickle.join();
  EXPECT_EQ(reply, "refused:no complete request line within 500 ms\n");
  EXPECT_GE(took, 400ms);
  EXPECT_LT(took, 2s) << "the trickle kept the connection open";
}

// One request per connection: answered, then closed; a last line without
// its newline at the end of input is still a request.
TEST_F(LineServerTest, OneRequestPerConnection) {
  start(one_each(4096, 64, 5s));
  UniqueFd c = connect();
  send_text(c.get(), "first\nsecond\n");
  EXPECT_EQ(read_all(c.get()), "ok:first\n");
  UniqueFd d = connect();
  send_text(d.get(), "unterminated");
  ::shutdown(d.get(), SHUT_WR);
  EXPECT_EQ(read_all(d.get()), "ok:unterminated\n");
}

// Idle connections at the limit locked everyone out ("busy"); now the one
// that has waited longest for its request makes way for the newcomer.
TEST_F(LineServerTest, IdleConnectionsAtTheLimitMakeWayForARealRequest) {
  start(one_each(4096, 4, 30s));
  std::vector<UniqueFd> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(connect());
  send_text(idle[3].get(), "{\"op\":");  // one sent half a request
  // All four accepted: a fifth connection with a request in hand evicts the
  // oldest idle one, which answers the eviction with its line.
  for (int round = 0; round < 3; ++round) {
    UniqueFd c = connect();
    send_text(c.get(), "status\n");
    EXPECT_EQ(read_all(c.get(), 2s), "ok:status\n") << "round " << round;
  }
  // The oldest idle connection was closed with a reason; the others wait on.
  EXPECT_EQ(read_all(idle[0].get(), 1s), "refused:closed to make way for a newer connection: no complete request came "
                                          "on this one\n");
  send_text(idle[3].get(), "\"status\"}\n");
  EXPECT_EQ(read_all(idle[3].get(), 2s), "ok:{\"op\":\"status\"}\n");
}

// Connections being answered (a take waiting for a clone) are never cut:
// only then is a newcomer refused, with one line.
TEST_F(LineServerTest, ANewcomerIsRefusedOnlyWhenEveryConnectionIsBeingAnswered) {
  Pending pending;
  start(one_each(4096, 2, 30s), [&](std::string_view, const LineServer::Reply& r) { pending.add(r); });
  UniqueFd a = connect(), b = connect();
  send_text(a.get(), "take\n");
  send_text(b.get(), "take\n");
  ASSERT_TRUE(wait_for([&] { return pending.size() == 2; })) << "the server never began answering both lines";
  UniqueFd c = connect();
  EXPECT_EQ(read_all(c.get(), 2s), "refused:busy: every connection is being answered (too many requests at once)\n");
  std::thread([&] {
    pending.at(0).send("ok:take");
    pending.at(1).send("ok:take");
  }).join();
  EXPECT_EQ(read_all(a.get(), 2s), "ok:take\n");
  EXPECT_EQ(read_all(b.get(), 2s), "ok:take\n");
}

// A client that leaves while its request is being answered frees its slot;
// its answer, given later, is dropped.
TEST_F(LineServerTest, AnAnswerAfterItsClientLeftIsDropped) {
  Pending pending;
  start(many(1), [&](std::string_view line, const LineServer::Reply& r) {
    if (line == "later") return pending.add(r);
    r.send("ok:" + std::string(line));
  });
  {
    UniqueFd gone = connect();
    send_text(gone.get(), "later\n");
    ASSERT_TRUE(wait_for([&] { return pending.size() == 1; }));
    EXPECT_TRUE(pending.at(0).wanted()) << "its client still waits";
  }
  // Its work can be left undone (the pool keeps the clone it would have
  // handed out) once the server has seen the hang-up.
  EXPECT_TRUE(wait_for([&] { return !pending.at(0).wanted(); }));
  // The only slot is free again once the server saw the hang-up.
  UniqueFd next;
  ASSERT_TRUE(wait_for([&] {
    next = connect();
    return try_send(next.get(), "hello\n") && read_line(next.get(), 2s) == "ok:hello\n";
  }));
  pending.at(0).send("too late");
  pending.at(0).send("much too late");
  send_text(next.get(), "again\n");
  EXPECT_EQ(read_line(next.get()), "ok:again\n");
}

// An answer given after the server is gone touches nothing of it (the
// handle holds the server's mailbox weakly: ASan and TSan check).
TEST_F(LineServerTest, AnAnswerAfterTheServerIsGoneIsDropped) {
  Pending pending;
  start(many(), [&](std::string_view, const LineServer::Reply& r) { pending.add(r); });
  UniqueFd c = connect();
  send_text(c.get(), "later\n");
  ASSERT_TRUE(wait_for([&] { return pending.size() == 1; }));
  stop_serving();
  server_.reset();
  EXPECT_EQ(read_all(c.get(), 2s), "");  // closed, unanswered
  EXPECT_FALSE(pending.at(0).wanted());
  std::thread([r = pending.at(0)] { r.send("too late"); }).join();
  pending.at(0).send("much too late");
}

// The pool's shutdown: serve() has returned when waiting takes fail; their
// lines still reach their clients as the server closes.
TEST_F(LineServerTest, AnswersGivenAfterServeReturnedAreSentOnClose) {
  Pending pending;
  start(one_each(4096, 4, 30s), [&](std::string_view, const LineServer::Reply& r) { pending.add(r); });
  UniqueFd c = connect();
  send_text(c.get(), "take\n");
  ASSERT_TRUE(wait_for([&] { return pending.size() == 1; }));
  stop_serving();
  std::thread([r = pending.at(0)] { r.send("refused:the pool is shutting down"); }).join();
  server_.reset();
  EXPECT_EQ(read_all(c.get(), 2s), "refused:the pool is shutting down\n");
}

// A peer that sends requests but never reads its answers is dropped after
// the send deadline, and holds up no other client meanwhile.
TEST_F(LineServerTest, AClientThatNeverReadsIsDropped) {
  LineServerOptions o = many();
  o.send_deadline = 300ms;
  const std::string big(4 << 20, 'a');  // more than the socket buffers take
  start(o, [&](std::string_view line, const LineServer::Reply& r) {
    r.send(line == "big" ? big : "ok:" + std::string(line));
  });
  UniqueFd deaf = connect();
  send_text(deaf.get(), "big\n");
  UniqueFd other = connect();
  send_text(other.get(), "hi\n");
  EXPECT_EQ(read_line(other.get()), "ok:hi\n");
  EXPECT_TRUE(closed_by_server(deaf.get(), 5s)) << "a peer that does not read kept its connection";
}

TEST_F(LineServerTest, AStopFdEndsServe) {
  auto listener = listen_unix(path_, 16, 0600, "test socket");
  ASSERT_TRUE(listener);
  LineServer server(
      std::move(*listener), [](std::string_view, const LineServer::Reply& r) { r.send("ok"); },
      [](std::string_view why) { return std::string(why); });
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC));
  std::atomic<bool> returned{false};
  std::thread t([&] {
    server.serve(stop.get());
    returned = true;
  });
  UniqueFd c = connect();
  send_text(c.get(), "x\n");
  EXPECT_EQ(read_line(c.get()), "ok\n");
  uint64_t one = 1;
  ASSERT_EQ(::write(stop.get(), &one, sizeof one), 8);
  EXPECT_TRUE(wait_for([&] { return returned.load(); }, 5s));
  t.join();
}

// Thousands of connections opened and closed (some mid-request, some after
// their answer) leave the server serving, with no descriptor left behind.
TEST_F(LineServerTest, ThousandsOfShortConnections) {
  start(many(16));
  auto open_fds = [] {
    size_t n = 0;
    for (int fd = 0; fd < 4096; ++fd) n += ::fcntl(fd, F_GETFD) >= 0 ? 1 : 0;
    return n;
  };
  const size_t before = open_fds();
  for (int i = 0; i < 3000; ++i) {
    auto c = connect_unix(path_);
    if (!c) continue;  // the backlog is full for a moment: refused, not a failure
    if (i % 3 == 1) try_send(c->get(), "half");
    if (i % 3 == 2 && try_send(c->get(), "whole\n")) {
      std::string line = read_line(c->get());
      EXPECT_TRUE(line == "ok:whole\n" || line == "refused:too many clients\n") << line;
    }
  }
  UniqueFd last;
  ASSERT_TRUE(wait_for([&] {
    last = connect();
    return try_send(last.get(), "still here\n") && read_line(last.get(), 2s) == "ok:still here\n";
  }));
  last.reset();
  // The server's end of each closed connection is closed too.
  EXPECT_TRUE(wait_for([&] { return open_fds() <= before; }, 5s)) << open_fds() << " open, " << before << " before";
}

}  // namespace
}  // namespace snapvm
