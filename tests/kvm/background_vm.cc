#include "background_vm.h"

#include "guest_env.h"

namespace snapvm::test {

using namespace std::chrono_literals;

BackgroundVm::BackgroundVm(const std::string& vsock, std::vector<MachineConfig::Disk> disks,
                           std::vector<state::PortForward> publish, uint32_t vcpus) {
  MachineConfig c;
  c.kernel_path = guest_kernel();
  c.initrd_path = guest_initrd();
  c.cmdline = "console=ttyAMA0 quiet panic=-1";
  c.mem_bytes = 256ull << 20;
  c.vcpus = vcpus;
  c.disks = std::move(disks);
  c.vsock_path = vsock;
  c.publish = std::move(publish);
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

}  // namespace snapvm::test
