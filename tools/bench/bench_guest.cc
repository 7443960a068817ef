#include "tools/bench/bench_guest.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "agent/client.h"
#include "arch/platform.h"

namespace snapvm::bench {

void die(const std::string& program, const std::string& what) {
  fmt::print(stderr, "{}: {}\n", program, what);
  std::exit(1);
}

namespace {
const auto program_start = std::chrono::steady_clock::now();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

uint64_t bytes_read_by(pid_t pid) {
  std::ifstream io(fmt::format("/proc/{}/io", pid));
  std::string key;
  uint64_t value = 0;
  while (io >> key >> value) {
    if (key == "rchar:") return value;
  }
  return 0;
}

bool wait_for_agent(const std::string& vsock, std::chrono::milliseconds poll, std::chrono::seconds limit) {
  agent::ExecRequest req;
  req.argv = {"true"};
  for (auto deadline = std::chrono::steady_clock::now() + limit;;) {
    auto r = agent::exec(vsock, req, {}, {});
    if (r && r->exit_code == 0) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(poll);
  }
}

void progress(const std::string& what) {
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - program_start).count();
  fmt::print(stderr, "[{:7.1f} s] {}\n", s, what);
}

StepWatchdog::StepWatchdog(std::string step, std::chrono::seconds limit) {
  thread_ = std::thread([this, step = std::move(step), limit] {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, limit, [&] { return done_; })) {
      progress(fmt::format("stuck: {} did not finish within {} s", step, limit.count()));
      std::_Exit(3);
    }
  });
}

StepWatchdog::~StepWatchdog() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

BenchGuest::BenchGuest(const std::string& kernel, const std::string& initrd, uint64_t mem, uint32_t cpus,
                       const std::string& vsock, bool track_dirty)
    : vsock_(vsock) {
  MachineConfig c;
  c.kernel_path = kernel;
  c.initrd_path = initrd;
  c.cmdline = std::string(arch::default_cmdline());
  c.mem_bytes = mem;
  c.vcpus = cpus;
  c.vsock_path = vsock;
  c.track_dirty = track_dirty;
  c.console = [this](std::string_view s) {
    std::lock_guard lock(mu_);
    console_.append(s);
  };
  // A boot takes seconds even in the emulated test host; three minutes is a
  // hang. A hang is reported in full (console tail, where each vCPU is) and
  // the boot tried once more: the figures measured after a boot do not
  // depend on it, and one rare hang of an emulated host should not cost the
  // run. A second hang, or a VM that ends while booting, ends the program.
  for (int attempt = 1;; ++attempt) {
    progress(fmt::format("booting a {} MiB, {}-vCPU guest", mem >> 20, cpus));
    std::string hang = boot(c);
    if (hang.empty()) break;
    if (attempt == 2) die("bench", hang);
    progress("boot hung, trying once more; " + hang);
  }
  progress("guest booted");
}

std::string BenchGuest::boot(const MachineConfig& c) {
  {
    std::lock_guard lock(mu_);
    console_.clear();
    ended_.reset();
  }
  auto m = Machine::create(c);
  if (!m) die("bench", m.error().describe());
  machine_ = std::move(*m);
  runner_ = std::thread([this] {
    auto r = machine_->run();
    std::string how = r ? fmt::format("exited ({})", to_string(*r)) : "failed: " + r.error().describe();
    if (std::string detail = machine_->exit_detail(); !detail.empty()) how += ": " + detail;
    std::lock_guard lock(mu_);
    ended_ = std::move(how);
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (console_.find("SNAPVM-GUEST-READY") != std::string::npos) return {};
      if (ended_) die("bench", fmt::format("the VM {} while booting; its console ends:\n{}", *ended_, console_tail()));
    }
    if (std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string where = "vCPUs: could not pause the VM to read them";
  if (machine_->pause()) {
    auto described = machine_->describe_vcpus();
    if (described) where = fmt::format("{}", fmt::join(*described, "; "));
  }
  machine_->request_stop();
  runner_.join();
  machine_.reset();
  std::lock_guard lock(mu_);
  return fmt::format("the guest did not boot within 3 minutes ({}); its console ends:\n{}", where, console_tail());
}

std::string BenchGuest::console_tail() const {
  constexpr size_t kTail = 4096;
  return console_.size() > kTail ? console_.substr(console_.size() - kTail) : console_;
}

BenchGuest::~BenchGuest() {
  machine_->request_stop();
  runner_.join();
}

double BenchGuest::run(const std::string& script) {
  agent::ExecRequest req;
  req.argv = {"sh", "-c", script};
  auto t0 = std::chrono::steady_clock::now();
  std::string err;
  auto r = agent::exec(vsock_, req, [](std::string_view) {}, [&](std::string_view s) { err.append(s); });
  if (!r) die("bench", r.error().describe());
  if (r->exit_code != 0) die("bench", fmt::format("guest command failed ({}): {}", r->exit_code, err));
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace snapvm::bench
