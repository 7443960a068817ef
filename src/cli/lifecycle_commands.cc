#include "cli/lifecycle_commands.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/json_fields.h"
#include "base/runtime_dir.h"
#include "base/unix_socket.h"
#include "base/unique_fd.h"
#include "cli/commands.h"
#include "cli/control_commands.h"
#include "cli/describe.h"
#include "control/control_client.h"

namespace snapvm::cli {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// A named VM that answered `info`.
struct RunningVm {
  std::string name;
  json info;
  pid_t serving_pid = 0;  // the process that serves its control socket, as the kernel says
  // The sockets as found (device and inode), so that only these are ever removed.
  std::optional<std::pair<dev_t, ino_t>> control_id, vsock_id;
  pid_t pid() const { return serving_pid; }
};

std::optional<std::pair<dev_t, ino_t>> file_id(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return std::nullopt;
  return std::pair{st.st_dev, st.st_ino};
}

// The pid of the process serving the socket, from the kernel (SO_PEERCRED),
// never from what that process says of itself: a VMM its guest took over
// could name any process for root's stop or kill to signal.
Result<pid_t> serving_pid(const std::string& socket) {
  auto fd = SNAPVM_TRY(connect_unix(socket));
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return errno_error("SO_PEERCRED " + socket);
  if (cred.pid <= 0) return make_error(ErrorCode::kFailedPrecondition, "{}: no process serves it", socket);
  return cred.pid;
}

// How long a VM's control socket has to answer ps and stop before it is
// called unresponsive: a VM writing a snapshot answers after it.
constexpr auto kInfoWait = 2s;

Result<RunningVm> find_vm(const std::string& name) {
  if (!is_vm_name(name)) {
    return make_error(ErrorCode::kInvalidArgument, "'{}' is no VM name (1-64 of A-Z a-z 0-9 _ . -)", name);
  }
  const std::string socket = control_path_for(name);
  if (::access(socket.c_str(), F_OK) != 0) return make_error(ErrorCode::kNotFound, "no VM named {} is running", name);
  auto info = control_request(socket, {{"op", "info"}}, kInfoWait);
  if (!info) return make_error(ErrorCode::kNotFound, "VM {} does not answer: {}", name, info.error().describe());
  RunningVm vm{name, std::move(*info), 0, std::nullopt, std::nullopt};
  vm.serving_pid = SNAPVM_TRY(serving_pid(socket));
  vm.control_id = file_id(socket);
  vm.vsock_id = file_id(runtime_path(name + ".vsock"));
  return vm;
}

std::string human_duration(int64_t ms) {
  const int64_t s = ms / 1000;
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
  return fmt::format("{}d{:02}h", s / 86400, s / 3600 % 24);
}

// A descriptor that becomes readable when `pid` ends, and sends it signals
// with no chance of hitting a process that took its number since.
UniqueFd open_pid(pid_t pid) { return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))); }

bool wait_for_end(const UniqueFd& pidfd, std::chrono::milliseconds timeout) {
  pollfd p{pidfd.get(), POLLIN, 0};
  for (;;) {
    int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

bool send_signal(const UniqueFd& pidfd, int sig) {
  return ::syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0) == 0 || errno == ESRCH;
}

// A pidfd of the VM's VMM, once the socket is seen served by that pid again
// after the pidfd is open: a pid freed and reused in between serves no
// socket of this VM, so the pidfd is never of another process.
UniqueFd open_vm_pid(const RunningVm& vm) {
  UniqueFd pidfd = open_pid(vm.pid());
  if (!pidfd.valid()) return pidfd;
  auto again = serving_pid(runtime_path(vm.name + ".sock"));
  if (!again || *again != vm.pid()) return UniqueFd();
  return pidfd;
}

// A VMM killed outright leaves its sockets: once it is gone, the very
// sockets it had (same inode) go, and only if nothing accepts on them; a
// VM of the same name started meanwhile keeps its own.
void remove_left_sockets(const RunningVm& vm) {
  const std::pair<std::string, std::optional<std::pair<dev_t, ino_t>>> sockets[] = {
      {runtime_path(vm.name + ".sock"), vm.control_id}, {runtime_path(vm.name + ".vsock"), vm.vsock_id}};
  for (const auto& [path, id] : sockets) {
    if (!id || file_id(path) != id) continue;
    auto fd = connect_unix(path);
    if (fd || fd.error().describe().find("refused") == std::string::npos) continue;  // served, or not ours to judge
    ::unlink(path.c_str());
  }
}

// --- ps -------------------------------------------------------------------

struct PsOptions {
  bool json = false;
};

int run_ps(const PsOptions& o) {
  std::vector<RunningVm> vms;
  size_t unreachable = 0;  // sockets of other users' VMs (0600), or VMs too busy to answer
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(kRuntimeDir), ec)) {
    const auto file = entry.path().filename().string();
    if (!file.ends_with(".sock")) continue;
    const std::string name = file.substr(0, file.size() - 5);
    if (!is_vm_name(name)) continue;
    // A socket nobody serves is a VM that is gone: not listed.
    auto vm = find_vm(name);
    if (vm) {
      vms.push_back(std::move(*vm));
    } else if (vm.error().describe().find("refused") == std::string::npos) {
      ++unreachable;
    }
  }
  if (unreachable > 0) {
    fmt::print(stderr, "snapvm: {} VM{} in {} did not answer (another user's, or busy): not listed\n", unreachable,
               unreachable == 1 ? "" : "s", kRuntimeDir);
  }
  std::sort(vms.begin(), vms.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  if (o.json) {
    json out = json::array();
    for (const auto& vm : vms) {
      out.push_back({{"name", vm.name},
                     {"pid", vm.pid()},
                     {"state", json_field_or(vm.info, "state", std::string())},
                     {"vcpus", json_field_or(vm.info, "vcpus", uint64_t{0})},
                     {"mem_bytes", json_field_or(vm.info, "mem_bytes", uint64_t{0})},
                     {"uptime_ms", json_field_or(vm.info, "uptime_ms", int64_t{0})},
                     {"origin", json_field_or(vm.info, "origin", std::string())}});
    }
    fmt::print("{}\n", out.dump(-1, ' ', false, json::error_handler_t::replace));
    return 0;
  }
  fmt::print("{:<20} {:>8} {:<8} {:>4} {:>9} {:>8}  {}\n", "NAME", "PID", "STATE", "CPUS", "MEMORY", "UPTIME",
             "FROM");
  for (const auto& vm : vms) {
    fmt::print("{:<20} {:>8} {:<8} {:>4} {:>9} {:>8}  {}\n", vm.name, vm.pid(),
               json_field_or(vm.info, "state", std::string()), json_field_or(vm.info, "vcpus", uint64_t{0}),
               human_bytes(json_field_or(vm.info, "mem_bytes", uint64_t{0})),
               human_duration(json_field_or(vm.info, "uptime_ms", int64_t{0})),
               json_field_or(vm.info, "origin", std::string()));
  }
  return 0;
}

// --- stop and kill -----------------------------------------------------------

struct StopOptions {
  std::string name;
  double timeout_s = 10;
  std::string signal = "KILL";
};

// The power button, then `timeout`; then SIGTERM (the VMM stops the VM and
// removes its sockets); then SIGKILL.
int run_stop(const StopOptions& o) {
  auto vm = find_vm(o.name);
  if (!vm) return report_error(vm.error().describe(), false);
  UniqueFd pidfd = open_vm_pid(*vm);
  if (!pidfd.valid()) return report_error(fmt::format("VM {}: its VMM (pid {}) is gone", o.name, vm->pid()), false);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  std::string how;
  if (auto pressed = control_request(control_path_for(o.name), {{"op", "shutdown"}}, 5s); !pressed) {
    // A paused guest cannot hear the button: it is stopped as it stands.
    fmt::print(stderr, "snapvm: {}: {}; stopping it\n", o.name, pressed.error().describe());
  } else if (wait_for_end(pidfd, timeout)) {
    how = "the guest shut down";
  } else {
    fmt::print(stderr, "snapvm: {}: the guest did not shut down within {} s; stopping it\n", o.name, o.timeout_s);
  }
  if (how.empty()) {
    send_signal(pidfd, SIGTERM);
    how = "stopped";
    if (!wait_for_end(pidfd, 5s)) {
      send_signal(pidfd, SIGKILL);
      wait_for_end(pidfd, 5s);
      remove_left_sockets(*vm);
      how = "killed (it did not stop within 5 s of SIGTERM)";
    }
  }
  fmt::print("{}: {}\n", o.name, how);
  return 0;
}

int signal_number(const std::string& name) {
  std::string n = name.starts_with("SIG") ? name.substr(3) : name;
  for (int sig = 1; sig < NSIG; ++sig) {
    const char* abbrev = ::sigabbrev_np(sig);
    if (abbrev != nullptr && n == abbrev) return sig;
  }
  int number = 0;
  auto [end, err] = std::from_chars(n.data(), n.data() + n.size(), number);
  return err == std::errc() && end == n.data() + n.size() && number > 0 && number < NSIG ? number : 0;
}

int run_kill(const StopOptions& o) {
  const int sig = signal_number(o.signal);
  if (sig == 0) return report_error(fmt::format("--signal {}: no such signal (KILL, TERM, INT, 9, ...)", o.signal), false, 2);
  auto vm = find_vm(o.name);
  if (!vm) return report_error(vm.error().describe(), false);
  UniqueFd pidfd = open_vm_pid(*vm);
  if (!pidfd.valid() || !send_signal(pidfd, sig)) {
    return report_error(fmt::format("VM {}: signal pid {}: {}", o.name, vm->pid(), std::strerror(errno)), false);
  }
  if (sig == SIGKILL) {
    wait_for_end(pidfd, 5s);
    remove_left_sockets(*vm);
  }
  return 0;
}

// --- logs ------------------------------------------------------------------

struct LogsOptions {
  std::string name;
  bool follow = false;
};

// Prints what `run -d` wrote to NAME.log; with --follow, keeps printing what
// comes until the VM has ended and the file is drained.
int run_logs(const LogsOptions& o) {
  if (!is_vm_name(o.name)) return report_error(fmt::format("'{}' is no VM name", o.name), false);
  const std::string path = runtime_path(o.name + ".log");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    return report_error(fmt::format("no log for VM {} ({}: {}; only `snapvm run -d` keeps one)", o.name, path,
                                    std::strerror(errno)),
                        false);
  }
  UniqueFd pidfd;
  if (o.follow) {
    if (auto vm = find_vm(o.name)) pidfd = open_vm_pid(*vm);
  }
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return report_error(fmt::format("read {}: {}", path, std::strerror(errno)), false);
    if (n > 0) {
      if (std::fwrite(buf, 1, static_cast<size_t>(n), stdout) != static_cast<size_t>(n)) return 1;  // reader gone
      std::fflush(stdout);
      continue;
    }
    // At the end: done, unless following a VM that still runs.
    if (!pidfd.valid()) return 0;
    if (wait_for_end(pidfd, 200ms)) pidfd = UniqueFd();  // one more pass drains what it wrote last
  }
}

}  // namespace

std::function<int()> register_lifecycle_commands(CLI::App& app) {
  auto ps_o = std::make_shared<PsOptions>();
  auto stop_o = std::make_shared<StopOptions>();
  auto logs_o = std::make_shared<LogsOptions>();
  const char* name_help = "the VM's name (run --name)";
  auto* ps = app.add_subcommand("ps", "List the named VMs running on this host (their sockets in /run/snapvm)");
  ps->add_flag("--json", ps_o->json, "one JSON array: name, pid, state, vcpus, mem_bytes, uptime_ms, origin");
  auto* stop = app.add_subcommand(
      "stop", "Shut a VM down: press its power button, wait for the guest, then stop the VMM (SIGTERM, then SIGKILL)");
  stop->add_option("NAME", stop_o->name, name_help)->required();
  stop->add_option("-t,--timeout", stop_o->timeout_s, "seconds the guest has to shut down")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  auto* kill = app.add_subcommand("kill", "Send a VM's VMM a signal (default KILL; its sockets are removed after)");
  kill->add_option("NAME", stop_o->name, name_help)->required();
  kill->add_option("-s,--signal", stop_o->signal, "signal name or number (TERM stops the VM cleanly)")
      ->capture_default_str();
  auto* logs = app.add_subcommand("logs", "Print a detached VM's console and messages (run -d)");
  logs->add_option("NAME", logs_o->name, name_help)->required();
  logs->add_flag("-f,--follow", logs_o->follow, "keep printing until the VM ends");
  return [=]() -> int {
    if (ps->parsed()) return run_ps(*ps_o);
    if (stop->parsed()) return run_stop(*stop_o);
    if (kill->parsed()) return run_kill(*stop_o);
    if (logs->parsed()) return run_logs(*logs_o);
    return -1;
  };
}

}  // namespace snapvm::cli
