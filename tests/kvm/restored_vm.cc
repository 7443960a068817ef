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
  // The guest's console goes to log + ".console": what a failing test shows.
  std::vector<std::string> args = {snapvm_binary(), "restore", snap, "--vsock", vsock, "--console", log + ".console"};
  args.insert(args.end(), extra.begin(), extra.end());
  pid_ = spawn_logged(std::move(args), log);
}

RestoredVm::~RestoredVm() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  ::waitpid(pid_, nullptr, 0);
}

std::string RestoredVm::log() const {
  std::string console = read_text(log_ + ".console");
  if (console.size() > 6000) console = "..." + console.substr(console.size() - 6000);
  return read_text(log_) + (console.empty() ? "" : "guest console (end):\n" + console);
}

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
  // Two minutes: a restored guest on a slow, shared CI machine can take many
  // times the usual second before its agent answers; a healthy one answers
  // at the first or second try.
  auto deadline = std::chrono::steady_clock::now() + 120s;
  Output o;
  do {
    o = run(vsock, argv);
    if (o.error.empty()) return o;
    std::this_thread::sleep_for(200ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return o;
}

}  // namespace snapvm::test
