#include "pool/pool.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <future>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/client.h"
#include "agent/protocol.h"
#include "control/control_client.h"
#include "base/json_fields.h"

namespace snapvm::pool {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
// A clone's control socket answers info and resume at once, and a pause
// within 10 s (its own budget); a clone that says nothing for longer is
// hung. Takes are handed out one after another, so a take's resume gets
// the short wait: one hung clone delays the takes behind it by that much.
constexpr std::chrono::milliseconds kControlReplyWait{5000};
constexpr std::chrono::milliseconds kPauseReplyWait{15000};

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// The last non-empty line of a clone's log: why it failed, in its words.
std::string last_line(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

void remove_files(std::initializer_list<const std::string*> paths) {
  for (const auto* p : paths) ::unlink(p->c_str());
}

}  // namespace

Result<std::unique_ptr<Pool>> Pool::start(PoolOptions o) {
  if (o.ready == 0 || o.max_clones < o.ready) {
    return make_error(ErrorCode::kInvalidArgument, "the pool keeps {} ready but allows {} clones: --max must be at "
                      "least --size, which must be at least 1", o.ready, o.max_clones);
  }
  if (::access(o.snapshot.c_str(), R_OK) != 0) return errno_error("snapshot " + o.snapshot);
  std::error_code ec;
  std::filesystem::create_directories(o.dir, ec);
  if (ec || ::chmod(o.dir.c_str(), 0700) != 0) {
    return make_error(ErrorCode::kIo, "pool directory {}: {}", o.dir, ec ? ec.message() : std::strerror(errno));
  }
  std::unique_ptr<Pool> pool(new Pool(std::move(o)));
  pool->reaper_ = std::thread([p = pool.get()] { p->reap_loop(); });
  pool->refill_ = std::thread([p = pool.get()] { p->refill_loop(); });
  pool->handout_ = std::thread([p = pool.get()] { p->handout_loop(); });
  return pool;
}

Pool::~Pool() { shutdown(); }

Result<Pool::Clone> Pool::launch(const std::string& id) {
  Clone c;
  c.id = id;
  c.control = fmt::format("{}/{}.sock", o_.dir, id);
  c.vsock = fmt::format("{}/{}.vsock", o_.dir, id);
  c.console = fmt::format("{}/{}.console", o_.dir, id);
  c.log = fmt::format("{}/{}.log", o_.dir, id);
  std::vector<std::string> args = {o_.snapvm_binary, "restore", o_.snapshot, "--paused", "--vsock", c.vsock,
                                   "--api", c.control, "--console", c.console, "--seccomp", o_.seccomp};
  if (!o_.allow_dir.empty()) args.insert(args.end(), {"--allow-dir", o_.allow_dir});
  for (uint16_t p : o_.tcp_ports) {
    args.insert(args.end(), {"-p", fmt::format("127.0.0.1:0:{}", agent::kTcpRelayBase + p)});
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int log = ::open(c.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log < 0) return errno_error("clone log " + c.log);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec (the pool has threads).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a pool that dies takes its clones along
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(log);
  if (pid < 0) return errno_error("fork");
  c.pid = pid;
  {
    MutexLock lock(mu_);
    if (exited_unclaimed_.erase(pid)) {
      clones_.erase(id);  // it ended before this line (the refill thread was slow): reported below
    } else {
      clones_[id].pid = pid;  // the reaper can tell it ended from here on
    }
  }
  const auto started = Clock::now();
  const auto deadline = started + std::chrono::seconds(60);
  for (;;) {
    {
      MutexLock lock(mu_);
      if (stopping_ && clones_.contains(id)) ::kill(pid, SIGKILL);  // the reaper collects it
      if (stopping_ || !clones_.contains(id)) {
        std::string why = stopping_ ? "the pool is shutting down" : last_line(c.log);
        remove_files({&c.control, &c.vsock, &c.console, &c.log});
        return make_error(ErrorCode::kFailedPrecondition, "clone {} ended while restoring: {}", id, why);
      }
    }
    auto info = control_request(c.control, {{"op", "info"}}, kControlReplyWait);
    if (info && json_field_or(*info, "state", std::string()) == "paused") {
      {
        MutexLock lock(mu_);
        clone_memory_ = json_field_or(*info, "mem_bytes", uint64_t{0});
      }
      const auto forwards = info->find("port_forwards");
      for (const auto& f : forwards != info->end() && forwards->is_array() ? *forwards : json::array()) {
        uint32_t guest = json_field_or(f, "guest_port", uint32_t{0});
        if (guest > agent::kTcpRelayBase) {
          c.addresses[static_cast<uint16_t>(guest - agent::kTcpRelayBase)] =
              fmt::format("{}:{}", json_field_or(f, "host_address", std::string()), json_field_or(f, "host_port", 0));
        }
      }
      // Unique before anyone can take it: clock and entropy, then paused again.
      auto unique = [&]() -> Status {
        SNAPVM_TRY(control_request(c.control, {{"op", "resume"}}, kControlReplyWait));
        SNAPVM_TRY(agent::sync_guest(c.vsock, std::chrono::seconds(30)));
        SNAPVM_TRY(control_request(c.control, {{"op", "pause"}}, kPauseReplyWait));
        return {};
      };
      if (auto made = unique(); !made) {
        stop_clone(pid);
        remove_files({&c.control, &c.vsock, &c.console, &c.log});
        return make_error(ErrorCode::kIo, "clone {}: {}", id, made.error().describe());
      }
      c.prepare_ms = ms_since(started);
      return c;
    }
    if (Clock::now() >= deadline) {
      stop_clone(pid);
      remove_files({&c.control, &c.vsock, &c.console, &c.log});
      return make_error(ErrorCode::kIo, "clone {} was not restored within 60 s", id);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void Pool::refill_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (ready_.size() + starting_ >= o_.ready || clones_.size() >= clone_limit()) {
      changed_.wait(lock);
      continue;
    }
    const std::string id = fmt::format("c{}", next_id_++);
    clones_[id].id = id;
    ++starting_;
    lock.unlock();
    auto c = launch(id);
    lock.lock();
    --starting_;
    auto it = clones_.find(id);
    if (!c) {
      ++counters_.failed_starts;
      last_error_ = c.error().describe();
      fmt::print(stderr, "snapvm pool: {}\n", last_error_);
      if (it != clones_.end() && it->second.pid > 0) stop_clone_locked(it->second.pid);
      changed_.notify_all();
      // A snapshot that cannot be restored would fail forever: back off.
      changed_.wait_for(lock, std::chrono::seconds(1), [this]() REQUIRES(mu_) { return stopping_; });
      continue;
    }
    if (it == clones_.end()) continue;  // ended right after its restore: the reaper saw it
    pid_t pid = it->second.pid;
    it->second = std::move(*c);
    it->second.pid = pid;
    it->second.phase = Clone::Phase::kReady;
    ready_.push_back(id);
    ++counters_.started;
    changed_.notify_all();
  }
}

void Pool::reap_loop() {
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      std::unique_lock lock(mu_);  // no clone process at the moment
      if (stopping_ && clones_.empty()) return;
      changed_.wait_for(lock, std::chrono::milliseconds(20));
      continue;
    }
    MutexLock lock(mu_);
    for (auto it = clones_.begin(); it != clones_.end(); ++it) {
      Clone& c = it->second;
      if (c.pid != pid) continue;
      if (c.phase == Clone::Phase::kReady) {
        ready_.erase(std::find(ready_.begin(), ready_.end(), c.id));
        if (!stopping_) {
          ++counters_.replaced;
          fmt::print(stderr, "snapvm pool: ready clone {} ended ({}); replacing it\n", c.id, last_line(c.log));
        }
      }
      // A starting clone's files are launch()'s to report and remove.
      if (c.phase != Clone::Phase::kStarting) remove_files({&c.control, &c.vsock, &c.console, &c.log});
      clones_.erase(it);
      pid = 0;
      break;
    }
    // A clone that ended before launch() wrote its pid down: launch() finds
    // it here (else its entry would stay, counted as starting, forever).
    if (pid != 0) exited_unclaimed_.insert(pid);
    changed_.notify_all();
  }
}

void Pool::stop_clone(pid_t pid) {
  MutexLock lock(mu_);
  stop_clone_locked(pid);
}

void Pool::stop_clone_locked(pid_t pid) {
  // Only a pid the reaper has not collected yet, so never a recycled one.
  for (const auto& [id, c] : clones_) {
    if (c.pid == pid) ::kill(pid, SIGKILL);
  }
}

size_t Pool::clone_limit() const {
  if (o_.max_memory == 0 || clone_memory_ == 0) return o_.max_clones;
  // Never below one clone: a pool that can run none would only fail.
  return std::clamp<size_t>(o_.max_memory / clone_memory_, 1, o_.max_clones);
}

void Pool::take_async(std::optional<std::chrono::milliseconds> wait, TakeDone done, std::function<bool()> wanted) {
  const auto w = wait.value_or(o_.take_wait);
  {
    MutexLock lock(mu_);
    if (!refusing_takes_) {
      waiters_.push_back({Clock::now() + w, w, std::move(done), std::move(wanted)});
      changed_.notify_all();
      return;
    }
  }
  done(make_error(ErrorCode::kFailedPrecondition, "the pool is shutting down"));
}

Result<TakenClone> Pool::take(std::optional<std::chrono::milliseconds> wait) {
  // Shared with the callback: the hand-out thread may still be inside
  // set_value() when this thread has its answer and returns.
  auto taken = std::make_shared<std::promise<Result<TakenClone>>>();
  auto answer = taken->get_future();
  take_async(wait, [taken](Result<TakenClone> r) { taken->set_value(std::move(r)); });
  return answer.get();
}

void Pool::handout_loop() {
  if (o_.enter_handout_thread) o_.enter_handout_thread();
  std::unique_lock lock(mu_);
  for (;;) {
    if (stopping_) return;  // refuse_takes() has answered every waiting take
    // A ready clone goes to the oldest waiting take, even one whose wait has
    // just run out (a wait of 0 takes a clone that is ready).
    if (!waiters_.empty() && !ready_.empty()) {
      Waiter w = std::move(waiters_.front());
      waiters_.pop_front();
      if (w.wanted && !w.wanted()) {
        // Its client has gone: a clone handed to nobody would stay taken.
        lock.unlock();
        w.done(make_error(ErrorCode::kFailedPrecondition, "the client left before a clone was ready"));
        lock.lock();
        continue;
      }
      Clone& c = clones_.at(ready_.front());
      ready_.pop_front();
      c.phase = Clone::Phase::kTaken;
      TakenClone t{c.id, c.pid, c.control, c.vsock, c.console, c.addresses, 0, c.prepare_ms};
      changed_.notify_all();  // the refill starts the next one now
      lock.unlock();
      w.done(resume(std::move(t)));
      lock.lock();
      continue;
    }
    const auto now = Clock::now();
    std::vector<std::pair<TakeDone, std::string>> expired;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->deadline > now) {
        ++it;
        continue;
      }
      expired.emplace_back(std::move(it->done), no_clone_reason(it->wait));
      it = waiters_.erase(it);
    }
    if (!expired.empty()) {
      lock.unlock();
      for (auto& [done, why] : expired) done(make_error(ErrorCode::kFailedPrecondition, std::move(why)));
      lock.lock();
      continue;
    }
    if (waiters_.empty()) {
      changed_.wait(lock);
    } else {
      // A copy: the waiter may be gone (answered by refuse_takes) while this
      // waits, and wait_until reads its deadline again on waking.
      const auto next = std::min_element(waiters_.begin(), waiters_.end(), [](const Waiter& a, const Waiter& b) {
                          return a.deadline < b.deadline;
                        })->deadline;
      changed_.wait_until(lock, next);
    }
  }
}

std::string Pool::no_clone_reason(std::chrono::milliseconds wait) const {
  if (clones_.size() >= clone_limit() && starting_ == 0) {
    return fmt::format("no clone free: all {} clones the pool may run are taken ({}); release one", clone_limit(),
                       clone_limit() < o_.max_clones ? "--max-memory" : "--max");
  }
  return fmt::format("no clone became ready within {} ms{}", wait.count(),
                     last_error_.empty() ? std::string() : " (last start: " + last_error_ + ")");
}

Result<TakenClone> Pool::resume(TakenClone t) {
  auto t1 = Clock::now();
  if (auto r = control_request(t.control, {{"op", "resume"}}, kControlReplyWait); !r) {
    stop_clone(t.pid);
    return make_error(ErrorCode::kIo, "clone {}: {}", t.id, r.error().describe());
  }
  t.resume_ms = ms_since(t1);
  return t;
}

Status Pool::release(const std::string& id) {
  MutexLock lock(mu_);
  auto it = clones_.find(id);
  if (it == clones_.end() || it->second.phase != Clone::Phase::kTaken || it->second.released) {
    return make_error(ErrorCode::kNotFound, "no taken clone `{}`", id.substr(0, 64));
  }
  it->second.released = true;
  stop_clone_locked(it->second.pid);
  return {};
}

PoolStats Pool::stats() const {
  MutexLock lock(mu_);
  PoolStats s = counters_;
  s.ready = ready_.size();
  s.starting = starting_;
  s.filled = starting_ == 0 && (ready_.size() >= o_.ready || clones_.size() >= clone_limit());
  for (const auto& [id, c] : clones_) {
    if (c.phase == Clone::Phase::kTaken) ++s.taken;
    const char* phase = c.phase == Clone::Phase::kStarting ? "starting" : c.phase == Clone::Phase::kReady ? "ready" : "taken";
    s.clones.push_back({id, phase, c.pid});
  }
  return s;
}

void Pool::refuse_takes() {
  std::deque<Waiter> failed;
  {
    MutexLock lock(mu_);
    refusing_takes_ = true;  // none join from now on
    failed.swap(waiters_);
  }
  for (auto& w : failed) w.done(make_error(ErrorCode::kFailedPrecondition, "the pool is shutting down"));
}

void Pool::shutdown() {
  refuse_takes();
  {
    MutexLock lock(mu_);
    if (stopping_ && !refill_.joinable()) return;
    stopping_ = true;
    changed_.notify_all();
  }
  if (refill_.joinable()) refill_.join();  // a launch in progress finishes first
  if (handout_.joinable()) handout_.join();  // a resume in progress finishes first
  {
    MutexLock lock(mu_);
    for (const auto& [id, c] : clones_) {
      if (c.pid > 0) ::kill(c.pid, SIGKILL);
    }
  }
  if (reaper_.joinable()) reaper_.join();
}

}  // namespace snapvm::pool
