#include "restored_vm.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "guest_env.h"

namespace snapvm::test {

using namespace std::chrono_literals;

RestoredVm::RestoredVm(const std::string& snap, const std::string& vsock, const std::string& log,
                       const std::vector<std::string>& extra)
    : vsock_(vsock), log_(log) {
  ::unlink(log.c_str());
  std::vector<std::string> args = {snapvm_binary(), "restore", snap, "--vsock", vsock, "--console", "/dev/null"};
  args.insert(args.end(), extra.begin(), extra.end());
  pid_ = spawn_logged(std::move(args), log);
}

RestoredVm::~RestoredVm() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  ::waitpid(pid_, nullptr, 0);
}

std::string RestoredVm::log() const { return read_text(log_); }

bool RestoredVm::wait_log(const std::string& text, std::chrono::seconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (log().find(text) != std::string::npos) return true;
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;  // reaped: never signal a pid that may be reused
      return log().find(text) != std::string::npos;
    }
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

Output run_when_up(const std::string& vsock, std::vector<std::string> argv) {
  Output o;
  for (int i = 0; i < 100; ++i) {
    o = run(vsock, argv);
    if (o.error.empty()) return o;
    std::this_thread::sleep_for(200ms);
  }
  return o;
}

}  // namespace snapvm::test
