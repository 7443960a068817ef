// How the agent starts a program: argv, environment, working directory,
// and optionally a root to chroot into and a user to become, as an image's
// config names them ("1000", "1000:1000", "app", "app:staff"), resolved in
// that root's /etc/passwd and /etc/group the way container runtimes do.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace snapvm::guest {

struct ProcessSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // NAME=VALUE
  std::string cwd = "/";
  std::string root;  // empty: the agent's own root
  std::string user;  // empty: root

  // Filled by resolve_user: what to become.
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

// From a request's argv, env (object), cwd, root, user; nullopt with
// `error` set when it is not one.
std::optional<ProcessSpec> parse_process_spec(const nlohmann::json& request, std::string& error);

// Looks the user up in the spec's root; adds HOME (and a PATH) to the
// environment when the request set none.
bool resolve_user(ProcessSpec& spec, std::string& error);

// In the forked child, before exec: chroot, chdir, groups, gid, uid, then
// the environment. Returns 0, or the errno that stopped it.
int enter_process(const ProcessSpec& spec);

// execvp with the spec's environment's PATH; returns only on failure.
void exec_process(ProcessSpec& spec);

// In a forked child: stdin, stdout and stderr from the given fds, then
// enter_process and exec_process; what stopped it (an errno) goes to
// `status_fd` (close-on-exec, so a successful exec writes nothing).
[[noreturn]] void run_process(ProcessSpec& spec, int in, int out, int err, int status_fd);

}  // namespace snapvm::guest
