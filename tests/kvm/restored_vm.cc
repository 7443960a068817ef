#include "restored_vm.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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
  auto api = std::find(extra.begin(), extra.end(), "--api");
  if (api != extra.end() && api + 1 != extra.end()) {
    api_ = *(api + 1);
  } else {
    api_ = log + ".api";
    args.insert(args.end(), {"--api", api_});
  }
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
  return read_text(log_) + (console.empty() ? "" : "guest console (end):\n" + console) + vm_state();
}

std::string RestoredVm::vm_state() const {
  if (pid_ <= 0 || ::kill(pid_, 0) != 0) return "";
  auto info = snapvm_cli("info --json " + api_, false, 30);
  if (info.rc != 0) return "VM state: " + info.out;
  if (info.out.find("\"state\": \"running\"") == std::string::npos) return "VM state:\n" + info.out;
  // Paused just long enough to read where the vCPUs are.
  snapvm_cli("pause " + api_, false, 30);
  info = snapvm_cli("info --json " + api_, false, 30);
  snapvm_cli("resume " + api_, false, 30);
  return "VM state (paused for it):\n" + info.out;
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

std::optional<int> RestoredVm::wait_exit(std::chrono::seconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (pid_ > 0 && std::chrono::steady_clock::now() < end) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;  // reaped: never signal a pid that may be reused
      return status;
    }
    std::this_thread::sleep_for(50ms);
  }
  return std::nullopt;
}

Output run_when_up(const std::string& vsock, std::vector<std::string> argv) {
  // Two minutes: a restored guest on a slow, shared CI machine can take many
  // times the usual second before its agent answers; a healthy one answers
  // at the first or second try.
  auto deadline = std::chrono::steady_clock::now() + 120s;
  Output o;
  do {
    o = run(vsock, argv);
    if (!worth_retrying(o)) return o;
    std::this_thread::sleep_for(200ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return o;
}

}  // namespace snapvm::test
