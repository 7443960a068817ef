// The pool's bookkeeping with stand-in clones (fake_clone.cc speaks the
// control socket and the agent's sync as a restored VM would): it fills
// to its size, hands clones out, refills, replaces a clone that dies,
// refuses takes beyond --max with one line, serves a burst of concurrent
// takes, reports a snapshot that cannot be restored, and stops every
// clone. Real clones on KVM: Image.* in the KVM suite.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "base/unix_socket.h"
#include "pool/line_server.h"
#include "pool/pool.h"
#include "test_util.h"

namespace snapvm {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("snapvm-pool-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "warm.snap") << "stand-in";
    ::unsetenv("FAKE_CLONE_FAIL");
  }
  void TearDown() override { fs::remove_all(dir_); }
  pool::PoolOptions options(size_t ready, size_t max) {
    pool::PoolOptions o;
    o.snapshot = (dir_ / "warm.snap").string();
    o.snapvm_binary = std::string(SNAPVM_BIN_DIR) + "/snapvm-test-fake-clone";
    o.dir = (dir_ / "clones").string();
    o.tcp_ports = {8080};
    o.ready = ready;
    o.max_clones = max;
    o.take_wait = 2s;
    return o;
  }
  static bool wait_for(const std::function<bool()>& done) {
    for (auto until = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < until;) {
      if (done()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  fs::path dir_;
};

TEST_F(PoolTest, FillsHandsOutRefillsReplacesAndStopsEveryClone) {
  auto p = pool::Pool::start(options(2, 3));
  ASSERT_TRUE(p) << p.error().describe();
  auto& pool = **p;
  ASSERT_TRUE(wait_for([&] { return pool.stats().ready == 2; }));
  auto a = pool.take();
  ASSERT_TRUE(a) << a.error().describe();
  EXPECT_EQ(a->addresses.size(), 1u);
  EXPECT_TRUE(a->addresses.at(8080).starts_with("127.0.0.1:")) << a->addresses.at(8080);
  EXPECT_GT(a->prepare_ms, 0);
  // The taken clone was resumed; the refill brings the pool back to two.
  ASSERT_TRUE(wait_for([&] { return pool.stats().ready == 2; }));
  auto b = pool.take();
  ASSERT_TRUE(b) << b.error().describe();
  EXPECT_NE(a->id, b->id);
  EXPECT_NE(a->addresses.at(8080), b->addresses.at(8080));
  // Three clones exist (two taken, one ready): the pool may run no more.
  ASSERT_TRUE(wait_for([&] { return pool.stats().ready == 1 && pool.stats().taken == 2; }));
  auto c = pool.take();
  ASSERT_TRUE(c);
  const auto asked = std::chrono::steady_clock::now();
  auto refused = pool.take(100ms);  // a take's own wait, shorter than the pool's 2 s
  ASSERT_FALSE(refused);
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 1500ms);
  EXPECT_EQ(refused.error().describe().find("no clone free: all 3 clones the pool may run are taken (--max)") !=
                std::string::npos,
            true)
      << refused.error().describe();
  // A release makes room; a ready clone that dies is replaced.
  EXPECT_TRUE(pool.release(a->id));
  EXPECT_FALSE(pool.release(a->id));
  EXPECT_FALSE(pool.release("c999"));
  ASSERT_TRUE(wait_for([&] { return pool.stats().ready == 1; }));
  pid_t victim = 0;
  for (const auto& info : pool.stats().clones) {
    if (info.phase == "ready") victim = info.pid;
  }
  ASSERT_GT(victim, 0);
  ::kill(victim, SIGKILL);
  ASSERT_TRUE(wait_for([&] { auto s = pool.stats(); return s.replaced == 1 && s.ready == 1; }));
  std::vector<pid_t> pids;
  for (const auto& info : pool.stats().clones) pids.push_back(info.pid);
  pool.shutdown();
  for (pid_t pid : pids) EXPECT_NE(::kill(pid, 0), 0) << "clone " << pid << " outlived shutdown";
  EXPECT_FALSE(pool.take());
  EXPECT_TRUE(fs::is_empty(dir_ / "clones")) << "every clone's sockets and logs are removed";
}

TEST_F(PoolTest, ABurstOfTakesGetsEveryCloneTheLimitAllowsAndClearRefusals) {
  auto p = pool::Pool::start(options(2, 4));
  ASSERT_TRUE(p) << p.error().describe();
  std::vector<Result<pool::TakenClone>> results(6, make_error(ErrorCode::kIo, "not run"));
  std::vector<std::thread> takers;
  for (size_t i = 0; i < results.size(); ++i) takers.emplace_back([&, i] { results[i] = (*p)->take(); });
  for (auto& t : takers) t.join();
  std::set<std::string> ids;
  size_t refused = 0;
  for (const auto& r : results) {
    if (r) {
      ids.insert(r->id);
    } else {
      ++refused;
      EXPECT_NE(r.error().describe().find("no clone"), std::string::npos) << r.error().describe();
    }
  }
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_EQ(refused, 2u);
}

TEST_F(PoolTest, ASnapshotThatCannotBeRestoredFailsTakesWithTheReason) {
  ::setenv("FAKE_CLONE_FAIL", "1", 1);
  auto p = pool::Pool::start(options(1, 2));
  ASSERT_TRUE(p) << p.error().describe();
  auto t = (*p)->take();
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().describe().find("checksum mismatch"), std::string::npos) << t.error().describe();
  EXPECT_GE((*p)->stats().failed_starts, 1u);
  auto bad = pool::Pool::start(options(3, 2));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().describe().find("--max must be at least --size"), std::string::npos);
}

// The pool socket's server (pool serve) with a stand-in handler.
class LineServerTest : public ::testing::Test {
 protected:
  void start(pool::LineServerLimits limits, pool::LineServer::Handler handler = nullptr) {
    if (!handler) handler = [](std::string_view line, bool&) { return "ok:" + std::string(line); };
    auto listener = listen_unix(path_, 128, 0600, "pool socket");
    ASSERT_TRUE(listener) << listener.error().describe();
    server_ = std::make_unique<pool::LineServer>(
        std::move(*listener), handler, [](std::string_view why) { return "refused:" + std::string(why); }, limits);
    thread_ = std::thread([this] { server_->serve(-1); });
  }
  void TearDown() override {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
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
    const auto until = std::chrono::steady_clock::now() + limit;
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return out + "<still open>";
      char buf[256];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  static void send_text(int fd, const std::string& s) {
    ASSERT_EQ(::send(fd, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }

  test::TempDir dir_;
  std::string path_ = dir_.file("pool.sock");
  std::unique_ptr<pool::LineServer> server_;
  std::thread thread_;
};

// The old server's 5 s limit applied to each recv: a byte every 100 ms kept
// a connection (and its slot) for as long as the client liked.
TEST_F(LineServerTest, AClientTricklingItsRequestIsCutAtTheDeadline) {
  start({4096, 64, 500ms});
  UniqueFd c = connect();
  std::atomic<bool> done{false};
  std::thread trickle([&] {
    for (int i = 0; i < 100 && !done; ++i) {
      if (::send(c.get(), "x", 1, MSG_NOSIGNAL) != 1) return;
      std::this_thread::sleep_for(100ms);
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  std::string reply = read_all(c.get());
  const auto took = std::chrono::steady_clock::now() - t0;
  done = true;
  trickle.join();
  EXPECT_EQ(reply, "refused:no complete request line within 500 ms\n");
  EXPECT_GE(took, 400ms);
  EXPECT_LT(took, 2s) << "the trickle kept the connection open";
}

// Idle connections at the limit locked everyone out ("busy"); now the one
// that has waited longest for its request makes way for the newcomer.
TEST_F(LineServerTest, IdleConnectionsAtTheLimitMakeWayForARealRequest) {
  start({4096, 4, 30s});
  std::vector<UniqueFd> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(connect());
  send_text(idle[3].get(), "{\"op\":");  // one sent half a request
  std::this_thread::sleep_for(100ms);     // all four accepted
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
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto answering = std::make_shared<std::atomic<int>>(0);
  start({4096, 2, 30s}, [released, answering](std::string_view line, bool&) {
    ++*answering;
    released.wait();
    return "ok:" + std::string(line);
  });
  UniqueFd a = connect(), b = connect();
  send_text(a.get(), "take\n");
  send_text(b.get(), "take\n");
  // Both connections are being answered once both handlers have begun (a
  // fixed sleep was too short on a loaded machine).
  for (int i = 0; i < 1000 && answering->load() < 2; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(answering->load(), 2) << "the server never began answering both lines";
  UniqueFd c = connect();
  EXPECT_EQ(read_all(c.get(), 2s), "refused:busy: every connection is being answered (too many requests at once)\n");
  release.set_value();
  EXPECT_EQ(read_all(a.get(), 2s), "ok:take\n");
  EXPECT_EQ(read_all(b.get(), 2s), "ok:take\n");
}

}  // namespace
}  // namespace snapvm
