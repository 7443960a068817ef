// What the KVM tests boot: the guest kernel and initramfs the test host
// payload carries, and a helper that boots them with a watchdog.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "vmm/machine.h"

namespace snapvm::test {

std::string guest_dir();  // $SNAPVM_GUEST_DIR or /payload/guest
std::string guest_kernel();
std::string guest_initrd();
std::string snapvm_binary();  // $SNAPVM_BIN or /payload/snapvm

// Runs the snapvm command line with `args` (shell words) and collects its
// exit status and output: stdout and stderr, or stderr alone. With a
// timeout, a command still running then is killed (status 143).
struct CliResult {
  int rc;
  std::string out;
};
CliResult snapvm_cli(const std::string& args, bool stderr_only = false, int timeout_seconds = 0);

// Starts `args` (argv[0] a path) in the background with its stderr in
// `stderr_log` (truncated); returns its pid.
pid_t spawn_logged(std::vector<std::string> args, const std::string& stderr_log);

// "running", "exited N" or "killed by signal N (NAME)" for a child of this
// process, without reaping it: for failure messages that must tell a VMM that
// died (the kernel's OOM killer leaves no message of its own) from a guest
// that misbehaved.
std::string process_state(pid_t pid);

// A whole text file ("" if it cannot be read).
std::string read_text(const std::string& path);

struct BootResult {
  bool created = false;
  std::string create_error;
  bool ran = false;
  std::string run_error;
  ExitReason exit = ExitReason::kStopped;
  std::string console;
  double seconds_to_marker = -1;  // host time from create() to the init marker
  bool timed_out = false;
};

// Boots the test guest with `snapvm.poweroff` so it ends by itself; the
// watchdog stops it after `timeout`.
BootResult boot_guest(uint32_t vcpus, uint64_t mem_bytes, std::chrono::seconds timeout,
                      const std::string& extra_cmdline = "snapvm.poweroff",
                      std::vector<MachineConfig::Disk> disks = {});

}  // namespace snapvm::test
