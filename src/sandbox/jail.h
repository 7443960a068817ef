// The jailer: starts a VMM (snapvm run, restore or firecracker) confined the way
// Firecracker's jailer confines Firecracker, so that a guest escaping
// through a device bug lands in a process that
//
//  - sees only its own directory (a mount namespace, pivot_root into
//    <root>/<id>/root, holding the files it was given, /dev/kvm and
//    /dev/null, and the sockets it creates),
//  - is PID 1 of its own PID namespace, with its own network (none unless
//    asked for), IPC and UTS namespaces,
//  - runs as an unprivileged uid/gid (no capabilities, no new privileges)
//    that can open /dev/kvm only through the node made for it in the jail,
//  - is held by cgroup v2 limits on memory, CPU and processes, and by
//    rlimits (open files, no core dumps).
//
// No user namespace: the jailer runs as root and drops to the jail's uid
// instead; a user namespace would give the VMM capabilities inside it and
// more of the kernel to attack, for nothing the uid drop does not give.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace snapvm::sandbox {

struct JailFile {
  std::string host_path;
  std::string jail_path;  // absolute, inside the jail
  bool writable = false;  // bind-mounted read-write (a disk), else read-only
};

struct JailConfig {
  std::string id;                     // [A-Za-z0-9_-]{1,64}: the VM's directory name
  std::string root = "/srv/snapvm";   // jails live in <root>/<id>/root
  uid_t uid = 0;                      // must not be 0
  gid_t gid = 0;                      // must not be 0
  std::vector<JailFile> files;        // what the VMM may see
  bool network = false;               // keep the host's network namespace
  std::optional<uint64_t> memory_max;     // cgroup memory.max, bytes
  std::optional<double> cpus;             // cgroup cpu.max, in CPUs
  std::optional<uint64_t> pids_max;       // cgroup pids.max
  uint64_t max_open_files = 4096;     // RLIMIT_NOFILE
  std::string cgroup_root = "/sys/fs/cgroup";
  std::vector<std::string> argv;      // the snapvm arguments to run inside (run, restore or firecracker ...)
};

// Checks the configuration; one line saying what is wrong.
Status validate(const JailConfig& config);

// The directory the jail's root is (<root>/<id>/root): where its sockets
// appear on the host.
std::string jail_dir(const JailConfig& config);

// Under `jail ... -- firecracker ...`: the API socket's path inside the
// jail (--api-sock, else Firecracker's /run/firecracker.socket; relative
// paths are from the jail's /), whose directories the jailer makes for the
// VMM. nullopt for other commands and for --no-api.
std::optional<std::string> api_socket_in_jail(const std::vector<std::string>& argv);

// The child's first step, before it builds the jail: closes every
// descriptor it inherited except stdin, stdout, stderr and `keep_fd` (the
// snapvm binary it will execveat), so no host file, socket or directory
// (a directory descriptor would lead out of the chroot) reaches the VMM,
// and starts a new session, so the VMM has no controlling terminal to
// inject input into (TIOCSTI) and the jailer's process group signals do
// not reach it. The caller must not be a process group leader (a forked
// child never is).
Status detach_from_parent(int keep_fd);

// Builds the jail, runs `snapvm ARGV...` inside it, waits, removes the jail
// and the cgroup, and returns the VMM's exit status (128 + signal if it was
// killed). Needs root.
Result<int> run_jailed(const JailConfig& config);

}  // namespace snapvm::sandbox
