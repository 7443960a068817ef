#include "cli/detach.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "base/runtime_dir.h"
#include "base/unique_fd.h"
#include "cli/control_commands.h"
#include "control/control_client.h"

namespace snapvm::cli {
namespace {

using namespace std::chrono_literals;

// How long the foreground waits for the VM's socket: the build (kernel
// parsed, RAM mapped, devices made) comes before it.
constexpr auto kDetachWait = 30s;

bool answers(const std::string& name, std::chrono::milliseconds wait) {
  return control_request(control_path_for(name), {{"op", "info"}}, wait).has_value();
}

}  // namespace

Result<UniqueFd> lock_vm_name(const std::string& name) {
  make_runtime_dir();
  const std::string path = runtime_path(name + ".lock");
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return errno_error("open " + path);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return make_error(ErrorCode::kFailedPrecondition, "a VM named {} is running already, or starting (snapvm stop {})",
                        name, name);
    }
    return errno_error("lock " + path);
  }
  return fd;
}

std::optional<int> detach(const std::string& name) {
  // The caller holds the name's lock (lock_vm_name): no other VM of this
  // name writes the log that is emptied here.
  const std::string log = runtime_path(name + ".log");
  UniqueFd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!log_fd.valid()) {
    fmt::print(stderr, "snapvm: -d: open {}: {}\n", log, std::strerror(errno));
    return 1;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t child = ::fork();
  if (child < 0) {
    fmt::print(stderr, "snapvm: -d: fork: {}\n", std::strerror(errno));
    return 1;
  }
  if (child == 0) {
    ::setsid();  // no terminal's signals reach it
    UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (null.valid()) ::dup2(null.get(), STDIN_FILENO);
    ::dup2(log_fd.get(), STDOUT_FILENO);
    ::dup2(log_fd.get(), STDERR_FILENO);
    return std::nullopt;
  }
  log_fd = UniqueFd();
  const auto deadline = std::chrono::steady_clock::now() + kDetachWait;
  for (;;) {
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) {
      std::ifstream in(log);
      std::stringstream text;
      text << in.rdbuf();
      fmt::print(stderr, "{}", text.str());
      fmt::print(stderr, "snapvm: VM {} ended before it answered on its control socket\n", name);
      return WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1;
    }
    if (answers(name, 200ms)) {
      fmt::print("{}\n", name);
      fmt::print(stderr, "snapvm: VM {} runs in the background (pid {}): snapvm logs -f {}; snapvm stop {}\n", name,
                 child, name, name);
      return 0;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      fmt::print(stderr, "snapvm: VM {} (pid {}) has not answered on its control socket within {} s; see snapvm logs {}\n",
                 name, child, kDetachWait.count(), name);
      return 1;
    }
    std::this_thread::sleep_for(50ms);
  }
}

}  // namespace snapvm::cli
