// The host side of the guest agent: connect through the VM's vsock Unix
// socket (Firecracker's CONNECT protocol), run commands, move files.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace snapvm::agent {

// Connects to guest vsock `port` through `uds_path`: "CONNECT <port>\n",
// then waits for "OK <host port>\n".
Result<UniqueFd> connect_vsock(const std::string& uds_path, uint32_t port,
                               std::chrono::milliseconds timeout = std::chrono::seconds(10));

struct ExecRequest {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string cwd;
  std::string root;  // chroot here first (agent::kImageRoot: the image's root); empty: the agent's
  std::string user;  // "uid[:gid]" or "name[:group]" of the root's /etc/passwd; empty: root
  std::chrono::milliseconds timeout{0};  // 0: none
  int stdin_fd = -1;                     // streamed until EOF; -1: empty stdin
  // How long the guest's agent has to answer before the guest is called
  // one without an agent (or not up yet).
  std::chrono::milliseconds agent_wait{std::chrono::seconds(10)};
};

struct ExecResult {
  int exit_code = -1;  // when the command exited
  int signal = 0;      // when a signal ended it
  bool timed_out = false;
  // The conventional shell status: the exit code, or 128 + signal.
  int shell_status() const { return signal != 0 ? 128 + signal : exit_code; }
};

using OutputFn = std::function<void(std::string_view)>;

Result<ExecResult> exec(const std::string& uds_path, const ExecRequest& request, const OutputFn& on_stdout,
                        const OutputFn& on_stderr);
// A long-running program started by the agent (an image's entrypoint): its
// output goes to the guest console, it outlives the connection, and its
// end is reported on the console as "SNAPVM-APP-EXIT code=N|signal=N"
// (then the guest powers off if `poweroff_on_exit`). Each of `tcp_ports`
// becomes reachable as vsock port kTcpRelayBase + port.
struct StartRequest {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string cwd, root, user;
  std::vector<uint16_t> tcp_ports;
  bool poweroff_on_exit = false;
};
// The program's pid in the guest. Retries while the agent is not up yet,
// for up to `wait`, or until `stop` is requested (one try takes at most
// 12 s).
Result<int> start_program(const std::string& uds_path, const StartRequest& request, std::chrono::milliseconds wait,
                          std::stop_token stop = {});

// Copies a host file into the guest; returns the bytes written there.
Result<uint64_t> put_file(const std::string& uds_path, const std::string& host_path, const std::string& guest_path);
struct GetOptions {
  // A guest file larger than this is refused and nothing is left behind.
  uint64_t max_bytes = uint64_t{16} << 30;
  // A guest that sends nothing for this long ends the copy (one line).
  std::chrono::milliseconds stall_timeout{std::chrono::seconds(30)};
};

// Copies a guest file to the host; returns its size. The bytes go to an
// unnamed file in host_path's directory (O_TMPFILE; where the filesystem
// lacks it, a new file of a random name, O_EXCL) that becomes host_path by
// one rename only when complete: no name another user planted there (a
// symlink at host_path or beside it) is followed, and a failed or killed
// copy leaves nothing behind.
Result<uint64_t> get_file(const std::string& uds_path, const std::string& guest_path, const std::string& host_path,
                          const GetOptions& options = {});

struct SyncResult {
  bool clock_set = false;
  bool reseeded = false;
  int announced = 0;          // network interfaces announced (gratuitous ARP)
  std::string network_error;  // a MAC that could not be set
};
// After a restore: sets the guest's wall clock to the host's, reseeds its
// random generator with fresh host entropy, gives eth<i> the MAC macs[i]
// (empty: unchanged) and has the guest announce its interfaces. Waits up
// to `timeout` for the agent to answer, or until `stop` is requested (one
// try takes at most 7 s). An agent that answers without having set the
// clock and reseeded is an error: clones of one snapshot would share
// their random numbers.
Result<SyncResult> sync_guest(const std::string& uds_path, std::chrono::milliseconds timeout,
                              const std::vector<std::string>& macs = {}, std::stop_token stop = {});

// A VM named on the command line: a socket path as given, or a name under
// /run/snapvm (NAME.vsock).
std::string vsock_path_for(const std::string& vm);

}  // namespace snapvm::agent
