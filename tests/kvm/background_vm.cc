#include "background_vm.h"

#include "guest_env.h"
#include "warm_snapshot.h"

#include "arch/platform.h"

namespace snapvm::test {

using namespace std::chrono_literals;

BackgroundVm::BackgroundVm(const std::string& vsock, const VmOptions& o) : vsock_(vsock) {
  auto machine = build(o, vsock);
  if (!machine) return;
  auto runner = VmRunner::start(std::move(machine));
  if (!runner) {
    error_ = runner.error().describe();
    return;
  }
  runner_ = std::move(*runner);
}

std::unique_ptr<Machine> BackgroundVm::build(const VmOptions& o, const std::string& vsock) {
  auto sink = [this](std::string_view s) {
    std::lock_guard lock(mu_);
    console_.append(s);
  };
  if (o.start == VmOptions::Start::kWarmRestore) {
    auto snap = warm_snapshot(o);
    if (!snap) {
      error_ = "warm start: " + snap.error();
      return nullptr;
    }
    RestoreOptions r;
    r.vsock_path = vsock;
    for (const auto& d : o.disks) r.disks.push_back(d.path);
    r.publish = o.publish;
    r.track_dirty = o.track_dirty;
    r.console = sink;
    auto m = Machine::restore(*snap, r);
    if (!m) {
      error_ = "warm start: restoring " + *snap + ": " + m.error().describe();
      return nullptr;
    }
    restored_ = true;
    return std::move(*m);
  }
  MachineConfig c;
  c.kernel_path = guest_kernel();
  c.initrd_path = guest_initrd();
  c.cmdline = std::string(arch::default_cmdline()) + " " + o.extra_cmdline;
  c.mem_bytes = o.mem_bytes;
  c.vcpus = o.vcpus;
  c.disks = o.disks;
  c.track_dirty = o.track_dirty;
  c.vsock_path = vsock;
  c.publish = o.publish;
  c.console = sink;
  auto m = Machine::create(c);
  if (!m) {
    error_ = m.error().describe();
    return nullptr;
  }
  return std::move(*m);
}

BackgroundVm::~BackgroundVm() = default;  // the runner stops and joins the VM

bool BackgroundVm::wait_ready(std::chrono::seconds timeout) {
  if (!runner_) return false;
  if (restored_) {
    auto synced = agent::sync_guest(vsock_, timeout);
    if (!synced) {
      error_ = "warm start: the restored guest's agent did not sync: " + synced.error().describe();
      return false;
    }
    return !exited();
  }
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (console().find("SNAPVM-GUEST-READY") != std::string::npos) return true;
    if (exited()) return false;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

std::string BackgroundVm::console() {
  std::lock_guard lock(mu_);
  return console_;
}

Output run(const std::string& vsock, std::vector<std::string> argv, int stdin_fd, std::chrono::milliseconds timeout) {
  Output o;
  agent::ExecRequest req;
  req.argv = std::move(argv);
  req.stdin_fd = stdin_fd;
  req.timeout = timeout;
  auto r = agent::exec(vsock, req, [&](std::string_view s) { o.out.append(s); },
                       [&](std::string_view s) { o.err.append(s); });
  if (r) {
    o.result = *r;
  } else {
    o.error = r.error().describe();
  }
  return o;
}

bool worth_retrying(const Output& o) {
  return !o.error.empty() && o.error.find("before the command ended") == std::string::npos;
}

}  // namespace snapvm::test
