#include "background_vm.h"

#include "guest_env.h"

#include "arch/platform.h"

namespace snapvm::test {

using namespace std::chrono_literals;

BackgroundVm::BackgroundVm(const std::string& vsock, const VmOptions& o) {
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
  c.console = [this](std::string_view s) {
    std::lock_guard lock(mu_);
    console_.append(s);
  };
  auto m = Machine::create(c);
  if (!m) {
    error_ = m.error().describe();
    return;
  }
  machine_ = std::move(*m);
  runner_ = std::thread([this] {
    (void)machine_->run();
    exited_ = true;
  });
}

BackgroundVm::~BackgroundVm() {
  if (machine_) machine_->request_stop();
  if (runner_.joinable()) runner_.join();
}

bool BackgroundVm::wait_ready(std::chrono::seconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (console().find("SNAPVM-GUEST-READY") != std::string::npos) return true;
    if (exited_) return false;
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
