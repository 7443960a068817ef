// The pool's bookkeeping with stand-in clones (fake_clone.cc speaks the
// control socket and the agent's sync as a restored VM would): it fills
// to its size, hands clones out, refills, replaces a clone that dies,
// refuses takes beyond --max with one line, serves a burst of concurrent
// takes and queued takes oldest first, reports a snapshot that cannot be
// restored, and stops every clone, failing the takes still waiting. Real
// clones on KVM: Image.* in the KVM suite. The pool socket's server:
// line_server_test.cc.
#include <gtest/gtest.h>

#include <future>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

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
  // Filled (pool serve's READY=1 to systemd): nothing left to start.
  ASSERT_TRUE(wait_for([&] { return pool.stats().filled; }));
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
  EXPECT_FALSE((*p)->stats().filled) << "a pool that cannot start a clone never says it is ready";
  auto bad = pool::Pool::start(options(3, 2));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().describe().find("--max must be at least --size"), std::string::npos);
}

// Takes wait in the pool's queue, not on their callers' threads: the caller
// returns at once, the oldest waiting take gets the next clone, and a
// shutdown fails every waiting take with one line (the pool socket's server
// answers from `done`).
TEST_F(PoolTest, WaitingTakesAreServedOldestFirstWithoutHoldingTheirCallers) {
  auto p = pool::Pool::start(options(1, 3));
  ASSERT_TRUE(p) << p.error().describe();
  auto& pool = **p;
  std::mutex mu;
  std::vector<std::pair<int, Result<pool::TakenClone>>> answers;
  std::condition_variable answered;
  const auto asked = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    pool.take_async(20s, [&, i](Result<pool::TakenClone> c) {
      std::lock_guard lock(mu);
      answers.emplace_back(i, std::move(c));
      answered.notify_all();
    });
  }
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 1s) << "take_async waited for a clone";
  std::unique_lock lock(mu);
  ASSERT_TRUE(answered.wait_for(lock, 30s, [&] { return answers.size() == 3; }));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(answers[i].first, i) << "takes were served out of order";
    ASSERT_TRUE(answers[i].second) << answers[i].second.error().describe();
  }
  EXPECT_NE(answers[0].second->id, answers[1].second->id);
  EXPECT_NE(answers[1].second->id, answers[2].second->id);
}

// A take whose client has gone (Ctrl-C on `pool take`) gets no clone: one
// handed to nobody would stay taken for good and count against --max.
TEST_F(PoolTest, ATakeNoLongerWantedLeavesItsCloneForTheNext) {
  auto p = pool::Pool::start(options(1, 1));
  ASSERT_TRUE(p) << p.error().describe();
  auto& pool = **p;
  std::promise<Result<pool::TakenClone>> abandoned;
  pool.take_async(
      30s, [&](Result<pool::TakenClone> c) { abandoned.set_value(std::move(c)); }, [] { return false; });
  auto left = abandoned.get_future().get();
  ASSERT_FALSE(left);
  EXPECT_NE(left.error().describe().find("the client left"), std::string::npos) << left.error().describe();
  // The pool may run one clone: the next take still gets it.
  auto next = pool.take(30s);
  ASSERT_TRUE(next) << next.error().describe();
  EXPECT_EQ(pool.stats().taken, 1u);
}

TEST_F(PoolTest, ShutdownFailsWaitingTakesWithOneLine) {
  auto p = pool::Pool::start(options(1, 1));
  ASSERT_TRUE(p) << p.error().describe();
  auto& pool = **p;
  ASSERT_TRUE(pool.take());  // the only clone the pool may run
  std::atomic<int> failed{0};
  std::atomic<int> calls{0};
  for (int i = 0; i < 4; ++i) {
    pool.take_async(60s, [&](Result<pool::TakenClone> c) {
      ++calls;
      if (!c && c.error().describe().find("the pool is shutting down") != std::string::npos) ++failed;
    });
  }
  const auto t0 = std::chrono::steady_clock::now();
  pool.shutdown();  // answers every waiting take before it returns
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_EQ(failed.load(), 4);
  // From then on a take is answered at once, on the caller's thread.
  bool answered = false;
  pool.take_async(60s, [&](Result<pool::TakenClone> c) { answered = !c; });
  EXPECT_TRUE(answered);
  EXPECT_EQ(calls.load(), 4) << "a waiting take was answered twice";
}

}  // namespace
}  // namespace snapvm
