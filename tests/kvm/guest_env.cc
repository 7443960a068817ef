#include "guest_env.h"

#include <fcntl.h>
#include <unistd.h>

#include <sys/wait.h>

#include <condition_variable>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include "arch/platform.h"
#include "vmm/vm_runner.h"

namespace snapvm::test {

std::string guest_dir() {
  const char* d = std::getenv("SNAPVM_GUEST_DIR");
  return d != nullptr ? d : "/payload/guest";
}
std::string guest_kernel() { return guest_dir() + "/kernel"; }
std::string guest_initrd() { return guest_dir() + "/initrd.cpio"; }
std::string snapvm_binary() {
  const char* b = std::getenv("SNAPVM_BIN");
  return b != nullptr ? b : "/payload/snapvm";
}

pid_t spawn_logged(std::vector<std::string> args, const std::string& stderr_log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(stderr_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

std::string process_state(pid_t pid) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    return fmt::format("unknown ({})", std::strerror(errno));
  }
  if (info.si_pid == 0) return "running";
  if (info.si_code == CLD_EXITED) return fmt::format("exited {}", info.si_status);
  return fmt::format("killed by signal {} ({})", info.si_status, ::strsignal(info.si_status));
}

CliResult snapvm_cli(const std::string& args, bool stderr_only, int timeout_seconds) {
  std::string cmd = (timeout_seconds > 0 ? "timeout " + std::to_string(timeout_seconds) + " " : std::string()) +
                    snapvm_binary() + " " + args + (stderr_only ? " 2>&1 >/dev/null" : " 2>&1");
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

BootResult boot_guest(uint32_t vcpus, uint64_t mem_bytes, std::chrono::seconds timeout,
                      const std::string& extra_cmdline, std::vector<MachineConfig::Disk> disks) {
  BootResult result;
  std::mutex mu;
  auto start = std::chrono::steady_clock::now();
  MachineConfig c;
  c.kernel_path = guest_kernel();
  c.initrd_path = guest_initrd();
  c.cmdline = std::string(arch::default_cmdline()) + " " + extra_cmdline;
  c.mem_bytes = mem_bytes;
  c.vcpus = vcpus;
  c.disks = std::move(disks);
  c.console = [&](std::string_view s) {
    std::lock_guard lock(mu);
    result.console.append(s);
    if (result.seconds_to_marker < 0 && result.console.find("SNAPVM-GUEST-READY") != std::string::npos) {
      result.seconds_to_marker = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
  };
  auto machine = Machine::create(c);
  if (!machine) {
    result.create_error = machine.error().describe();
    return result;
  }
  result.created = true;

  auto runner = VmRunner::start(std::move(*machine));
  if (!runner) {
    result.run_error = runner.error().describe();
    return result;
  }
  // The watchdog: a guest that neither powers off nor fails in `timeout` is stopped.
  (*runner)->add_companion([&result, timeout, vm = runner->get()](std::stop_token ended) {
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    cv.wait_for(lock, ended, timeout, [] { return false; });
    if (!ended.stop_requested()) {
      result.timed_out = true;  // read once wait() has joined this thread
      vm->request_stop();
    }
  });
  auto exit = (*runner)->wait();
  if (exit) {
    result.ran = true;
    result.exit = *exit;
  } else {
    result.run_error = exit.error().describe();
  }
  return result;
}

}  // namespace snapvm::test

