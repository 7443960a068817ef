#include "cli/agent_commands.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "agent/client.h"
#include "base/units.h"

namespace snapvm::cli {
namespace {

struct ExecOptions {
  std::string vm;
  std::vector<std::string> command;
  std::vector<std::string> env;
  std::string cwd;
  double timeout_s = 0;
  bool interactive = false;
};

int run_exec(const ExecOptions& o) {
  agent::ExecRequest req;
  req.argv = o.command;
  req.cwd = o.cwd;
  req.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  // -t bounds the whole command, the wait for the agent included.
  if (req.timeout.count() > 0) req.agent_wait = std::min(req.agent_wait, req.timeout);
  req.stdin_fd = o.interactive ? STDIN_FILENO : -1;
  for (const auto& e : o.env) {
    auto eq = e.find('=');
    if (eq == std::string::npos || eq == 0) {
      fmt::print(stderr, "snapvm: -e {}: expected NAME=VALUE\n", e);
      return 1;
    }
    req.env[e.substr(0, eq)] = e.substr(eq + 1);
  }
  auto write_to = [](FILE* f) {
    return [f](std::string_view s) {
      std::fwrite(s.data(), 1, s.size(), f);
      std::fflush(f);
    };
  };
  auto r = agent::exec(agent::vsock_path_for(o.vm), req, write_to(stdout), write_to(stderr));
  if (!r) {
    fmt::print(stderr, "snapvm: {}\n", r.error().describe());
    return 125;  // like docker exec: the command did not run
  }
  if (r->timed_out) fmt::print(stderr, "snapvm: the command timed out after {} s and was killed\n", o.timeout_s);
  return r->shell_status();
}

// "VM:PATH" -> {VM, PATH}; a path with '/' before any ':' is local.
bool split_remote(const std::string& s, std::string* vm, std::string* path) {
  auto colon = s.find(':');
  if (colon == std::string::npos || colon == 0) return false;
  auto slash = s.find('/');
  if (slash != std::string::npos && slash < colon) return false;
  *vm = s.substr(0, colon);
  *path = s.substr(colon + 1);
  return true;
}

struct CpOptions {
  std::vector<std::string> args;  // SRC DST
  // The library's defaults, as the user writes them.
  std::string max_size = fmt::format("{}G", agent::GetOptions{}.max_bytes >> 30);
  double timeout_s = std::chrono::duration<double>(agent::GetOptions{}.stall_timeout).count();
};

int run_cp(const CpOptions& o) {
  const std::string& src = o.args[0];
  const std::string& dst = o.args[1];
  std::string vm, path;
  Result<uint64_t> r = make_error(ErrorCode::kInvalidArgument, "");
  bool from_guest = split_remote(src, &vm, &path);
  std::string vm2, path2;
  bool to_guest = split_remote(dst, &vm2, &path2);
  if (from_guest == to_guest) {
    fmt::print(stderr, "snapvm: cp: exactly one of SRC and DST must be VM:PATH\n");
    return 1;
  }
  if (from_guest) {
    agent::GetOptions get;
    auto max = parse_size_flag("--max-size", o.max_size);
    if (!max) {
      fmt::print(stderr, "snapvm: {}\n", max.error().describe());
      return 2;
    }
    if (!(o.timeout_s > 0 && o.timeout_s <= 86400)) {
      fmt::print(stderr, "snapvm: cp: --timeout: 0 < SECONDS <= 86400\n");
      return 1;
    }
    get.max_bytes = *max;
    get.stall_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
    r = agent::get_file(agent::vsock_path_for(vm), path, dst, get);
  } else {
    r = agent::put_file(agent::vsock_path_for(vm2), src, path2);
  }
  if (!r) {
    fmt::print(stderr, "snapvm: cp: {}\n", r.error().describe());
    return 1;
  }
  return 0;
}

}  // namespace

std::function<int()> register_agent_commands(CLI::App& app) {
  auto o = std::make_shared<ExecOptions>();
  auto* exec = app.add_subcommand("exec", "Run a command in a running VM through its guest agent");
  exec->add_option("VM", o->vm, "the VM: its vsock socket path, or a name (/run/snapvm/NAME.vsock)")->required();
  exec->add_option("COMMAND", o->command, "command and arguments (after --)")->required();
  exec->add_option("-e,--env", o->env, "NAME=VALUE for the command's environment; repeatable");
  exec->add_option("-w,--workdir", o->cwd, "working directory in the guest");
  exec->add_option("-t,--timeout", o->timeout_s,
                   "kill the command after this many seconds; also the longest wait for the guest's agent to "
                   "answer (default 10 s), after which the guest is named as having none");
  exec->add_flag("-i,--interactive", o->interactive, "stream this process's stdin to the command");
  exec->footer("Exit status: the command's, 128 + N if signal N ended it, 125 if it could not run.\n"
               "Example: snapvm exec /tmp/vm.vsock -- uname -a");

  auto cpo = std::make_shared<CpOptions>();
  auto* cp = app.add_subcommand("cp", "Copy a file between the host and a running VM (VM:PATH on one side)");
  cp->add_option("SRC DST", cpo->args, "source and destination")->required()->expected(2);
  cp->add_option("--max-size", cpo->max_size, "from the guest: refuse a file larger than this (K, M, G, T)")
      ->capture_default_str();
  cp->add_option("-t,--timeout", cpo->timeout_s, "from the guest: give up when it sends nothing for this many seconds")
      ->capture_default_str();
  cp->footer("A copy from the guest becomes DST only when complete (one rename; a planted symlink at or beside\n"
             "DST is never followed) and leaves nothing behind when it fails.\n"
             "Examples:\n  snapvm cp ./data.bin web:/tmp/data.bin\n  snapvm cp web:/var/log/app.log ./app.log");

  return [exec, cp, o, cpo]() -> int {
    if (*exec) return run_exec(*o);
    if (*cp) return run_cp(*cpo);
    return -1;
  };
}

}  // namespace snapvm::cli
