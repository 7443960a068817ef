#include "tools/bench/bench_guest.h"

#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "agent/client.h"
#include "arch/platform.h"

namespace snapvm::bench {

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

void await_restored_agent(const std::string& vsock, const std::string& what, const ChildProcess& vmm,
                          std::chrono::milliseconds poll) {
  if (!wait_for_agent(vsock, poll)) die(fmt::format("{}: the restored agent never answered: {}", what, vmm.output()));
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
  }
  auto m = Machine::create(c);
  if (!m) die("bench", m.error().describe());
  auto runner = VmRunner::start(std::move(*m));
  if (!runner) die("bench", runner.error().describe());
  runner_ = std::move(*runner);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (console_.find("SNAPVM-GUEST-READY") != std::string::npos) return {};
    }
    if (runner_->ended()) {
      // A guest that powers off or fails while booting is reported at once.
      auto exit = runner_->wait();
      std::string how = exit ? fmt::format("exited ({})", to_string(*exit)) : "failed: " + exit.error().describe();
      if (std::string detail = runner_->machine().exit_detail(); !detail.empty()) how += ": " + detail;
      std::lock_guard lock(mu_);
      die("bench", fmt::format("the VM {} while booting; its console ends:\n{}", how, console_tail()));
    }
    if (std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string where = "vCPUs: could not pause the VM to read them";
  if (runner_->machine().pause()) {
    auto described = runner_->machine().describe_vcpus();
    if (described) where = fmt::format("{}", fmt::join(*described, "; "));
  }
  runner_.reset();  // stops and joins it
  std::lock_guard lock(mu_);
  return fmt::format("the guest did not boot within 3 minutes ({}); its console ends:\n{}", where, console_tail());
}

std::string BenchGuest::console_tail() const {
  constexpr size_t kTail = 4096;
  return console_.size() > kTail ? console_.substr(console_.size() - kTail) : console_;
}

BenchGuest::~BenchGuest() = default;  // the runner stops and joins the VM

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

WriteStats snapshot_booted_guest(const std::string& kernel, const std::string& initrd, uint64_t mem, uint32_t cpus,
                                 const std::string& vsock, const std::string& path,
                                 const std::function<void(Machine&)>& also) {
  BenchGuest guest(kernel, initrd, mem, cpus, vsock);
  StepWatchdog watchdog("snapshot of the booted guest", std::chrono::minutes(10));
  if (!guest.machine().pause()) die("pause failed");
  auto stats = guest.machine().snapshot(path);
  if (!stats) die(stats.error().describe());
  if (also) also(guest.machine());
  return *stats;
}

}  // namespace snapvm::bench
