#include "agent.h"

#include <fcntl.h>
#include <sys/socket.h>
// After sys/socket.h, which it needs.
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/protocol.h"
#include "base/json_fields.h"
#include "network.h"
#include "process_spec.h"
#include "tcp_relay.h"

namespace snapvm::guest {
namespace {

using agent::Frame;
using nlohmann::json;

constexpr size_t kChunk = 64 * 1024;

bool write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool send_frame(int fd, Frame type, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out;
  agent::append_frame(out, type, payload);
  return write_all(fd, out.data(), out.size());
}

bool send_json(int fd, Frame type, const json& j) {
  std::string s = j.dump();
  return send_frame(fd, type, {reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

// Reads until one frame is complete; nullopt on EOF or error.
std::optional<agent::FrameReader::Message> read_frame(int fd, agent::FrameReader& r) {
  for (;;) {
    if (auto m = r.next()) return m;
    if (r.error()) return std::nullopt;
    uint8_t buf[kChunk];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    r.feed({buf, static_cast<size_t>(n)});
  }
}

void fail(int fd, const std::string& message) { send_json(fd, Frame::kError, {{"message", message}}); }

void serve_exec(int conn, const json& req, agent::FrameReader& reader) {
  std::string error;
  auto spec = parse_process_spec(req, error);
  if (!spec || !resolve_user(*spec, error)) return fail(conn, "exec: " + error);
  spec->env.push_back("TERM=dumb");
  const std::string argv0 = spec->argv[0];
  int64_t timeout_ms = json_field_or(req, "timeout_ms", int64_t{0});

  int in[2], out[2], err[2], status_pipe[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0 ||
      ::pipe2(status_pipe, O_CLOEXEC) != 0) {
    return fail(conn, std::string("exec: pipe: ") + std::strerror(errno));
  }
  pid_t pid = ::fork();
  if (pid < 0) return fail(conn, std::string("exec: fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::setsid();  // its own process group: a timeout kills everything it started
    run_process(*spec, in[0], out[1], err[1], status_pipe[1]);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  ::close(status_pipe[1]);
  int exec_errno = 0;
  if (::read(status_pipe[0], &exec_errno, sizeof exec_errno) == sizeof exec_errno) {
    ::waitpid(pid, nullptr, 0);
    ::close(status_pipe[0]);
    std::string what = exec_errno == ENOENT ? "command not found" : std::strerror(exec_errno);
    return fail(conn, "exec " + argv0 + ": " + what);
  }
  ::close(status_pipe[0]);
  ::fcntl(in[1], F_SETFL, O_NONBLOCK);

  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int stdin_fd = in[1];
  bool want_stdin_close = false;
  std::vector<uint8_t> stdin_buf;
  // Frames that arrived with the request are already in the reader.
  auto take_frames = [&] {
    while (auto m = reader.next()) {
      if (m->type == Frame::kStdin) stdin_buf.insert(stdin_buf.end(), m->payload.begin(), m->payload.end());
      if (m->type == Frame::kStdinEof) want_stdin_close = true;
    }
  };
  take_frames();
  int outs[2] = {out[0], err[0]};
  bool timed_out = false, conn_open = true;
  uint8_t buf[kChunk];
  while (outs[0] >= 0 || outs[1] >= 0) {
    pollfd fds[4];
    int nfds = 0;
    int conn_slot = -1, stdin_slot = -1, out_slot[2] = {-1, -1};
    if (conn_open && stdin_buf.size() < 4 * kChunk) {
      conn_slot = nfds;
      fds[nfds++] = {conn, POLLIN, 0};
    }
    if (stdin_fd >= 0 && !stdin_buf.empty()) {
      stdin_slot = nfds;
      fds[nfds++] = {stdin_fd, POLLOUT, 0};
    }
    for (int i = 0; i < 2; ++i) {
      if (outs[i] >= 0) {
        out_slot[i] = nfds;
        fds[nfds++] = {outs[i], POLLIN, 0};
      }
    }
    int wait_ms = -1;
    if (timeout_ms > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      wait_ms = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    int r = ::poll(fds, static_cast<nfds_t>(nfds), wait_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0 && timeout_ms > 0 && !timed_out) {
      timed_out = true;
      ::kill(-pid, SIGKILL);
      timeout_ms = 0;  // now wait for the pipes to close
      continue;
    }
    if (conn_slot >= 0 && fds[conn_slot].revents) {
      ssize_t n = ::read(conn, buf, sizeof buf);
      if (n <= 0) {
        conn_open = false;  // the host went away: nobody will read the output
        ::kill(-pid, SIGKILL);
      } else {
        reader.feed({buf, static_cast<size_t>(n)});
        take_frames();
      }
    }
    if (stdin_slot >= 0 && fds[stdin_slot].revents) {
      ssize_t n = ::write(stdin_fd, stdin_buf.data(), stdin_buf.size());
      if (n > 0) {
        stdin_buf.erase(stdin_buf.begin(), stdin_buf.begin() + n);
      } else if (n < 0 && errno != EAGAIN) {
        stdin_buf.clear();  // the command closed its stdin
        want_stdin_close = true;
      }
    }
    if (want_stdin_close && stdin_buf.empty() && stdin_fd >= 0) {
      ::close(stdin_fd);
      stdin_fd = -1;
    }
    for (int i = 0; i < 2; ++i) {
      if (out_slot[i] < 0 || fds[out_slot[i]].revents == 0) continue;
      ssize_t n = ::read(outs[i], buf, sizeof buf);
      if (n <= 0) {
        ::close(outs[i]);
        outs[i] = -1;
      } else if (conn_open) {
        if (!send_frame(conn, i == 0 ? Frame::kStdout : Frame::kStderr, {buf, static_cast<size_t>(n)})) {
          conn_open = false;
          ::kill(-pid, SIGKILL);
        }
      }
    }
  }
  if (stdin_fd >= 0) ::close(stdin_fd);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  json result;
  if (WIFEXITED(status)) result["code"] = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result["signal"] = WTERMSIG(status);
  result["timed_out"] = timed_out;
  if (conn_open) send_json(conn, Frame::kExit, result);
}

void serve_put(int conn, const json& req, agent::FrameReader& reader) {
  std::string path = json_field_or(req, "path", std::string());
  int mode = json_field_or(req, "mode", 0644);
  if (path.empty()) return fail(conn, "put: no path");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777);
  if (fd < 0) return fail(conn, "put " + path + ": " + std::strerror(errno));
  uint64_t bytes = 0;
  bool ok = true;
  std::string error;
  for (;;) {
    auto m = read_frame(conn, reader);
    if (!m) {
      ok = false;
      error = "connection ended before the file did";
      break;
    }
    if (m->type == Frame::kDataEnd) break;
    if (m->type != Frame::kData) continue;
    if (ok && !write_all(fd, m->payload.data(), m->payload.size())) {
      ok = false;
      error = std::strerror(errno);
    }
    bytes += m->payload.size();
  }
  if (ok && ::fsync(fd) != 0) {
    ok = false;
    error = std::strerror(errno);
  }
  ::close(fd);
  if (!ok) return fail(conn, "put " + path + ": " + error);
  send_json(conn, Frame::kOk, {{"bytes", bytes}});
}

void serve_get(int conn, const json& req) {
  std::string path = json_field_or(req, "path", std::string());
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(conn, "get " + path + ": " + std::strerror(errno));
  uint8_t buf[kChunk];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return fail(conn, "get " + path + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    if (!send_frame(conn, Frame::kData, {buf, static_cast<size_t>(n)})) break;
  }
  ::close(fd);
  send_frame(conn, Frame::kDataEnd, {});
}

// A long-running program (an image's entrypoint): its output goes to the
// guest console, it outlives this connection (and snapshots, and restores
// into other processes), and a supervisor reports its end on the console
// ("SNAPVM-APP-EXIT code=N" or "signal=N") and, if asked, powers the VM off
// so the VM lives exactly as long as its program, like a container.
void serve_start(int conn, const json& req) {
  std::string error;
  auto spec = parse_process_spec(req, error);
  if (!spec || !resolve_user(*spec, error)) return fail(conn, "start: " + error);
  if (!spec->root.empty() && ::access((spec->root + "/proc/self").c_str(), F_OK) != 0) {
    return fail(conn, "start: no image is mounted at " + spec->root + " (the guest console says why)");
  }
  const bool poweroff = json_field_or(req, "poweroff_on_exit", false);
  if (req.contains("tcp_ports") && req["tcp_ports"].is_array()) {
    if (req["tcp_ports"].size() > 64) return fail(conn, "start: over 64 tcp_ports");
    for (const auto& p : req["tcp_ports"]) {
      if (!p.is_number_unsigned() || p.get<uint64_t>() == 0 || p.get<uint64_t>() > 65535) {
        return fail(conn, "start: tcp_ports must be numbers from 1 to 65535");
      }
      if (!start_tcp_relay(p.get<uint16_t>(), error)) return fail(conn, "start: " + error);
    }
  }
  int console = ::open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
  int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  // Two pipes: the app's pid from the supervisor, and the exec error (if
  // any) from the app, which may come first.
  int pid_pipe[2], status[2];
  if (console < 0 || null < 0 || ::pipe2(pid_pipe, O_CLOEXEC) != 0 || ::pipe2(status, O_CLOEXEC) != 0) {
    return fail(conn, std::string("start: ") + std::strerror(errno));
  }
  pid_t supervisor = ::fork();
  if (supervisor < 0) return fail(conn, std::string("start: fork: ") + std::strerror(errno));
  if (supervisor == 0) {
    ::setsid();
    ::prctl(PR_SET_NAME, "snapvm-app");
    pid_t app = ::fork();
    if (app == 0) run_process(*spec, null, console, console, status[1]);
    int32_t announced = app;
    (void)!::write(pid_pipe[1], &announced, sizeof announced);
    ::close(pid_pipe[1]);
    ::close(status[1]);
    int st = 0;
    while (::waitpid(app, &st, 0) < 0 && errno == EINTR) {
    }
    std::string line = WIFSIGNALED(st) ? "SNAPVM-APP-EXIT signal=" + std::to_string(WTERMSIG(st))
                                       : "SNAPVM-APP-EXIT code=" + std::to_string(WEXITSTATUS(st));
    line += "\n";
    (void)!::write(console, line.data(), line.size());
    if (poweroff) {
      ::sync();
      ::reboot(RB_POWER_OFF);
    }
    ::_exit(0);
  }
  ::close(pid_pipe[1]);
  ::close(status[1]);
  ::close(console);
  ::close(null);
  int32_t pid = -1;
  int exec_errno = 0;
  bool got_pid = ::read(pid_pipe[0], &pid, sizeof pid) == sizeof pid;
  bool failed = ::read(status[0], &exec_errno, sizeof exec_errno) == sizeof exec_errno;
  ::close(pid_pipe[0]);
  ::close(status[0]);
  if (!got_pid) return fail(conn, "start: the supervisor failed");
  if (failed) {
    std::string what = exec_errno == ENOENT ? "not found" : std::strerror(exec_errno);
    return fail(conn, "start " + spec->argv[0] + ": " + what);
  }
  send_json(conn, Frame::kOk, {{"pid", pid}});
}

// After a restore the guest's wall clock is where the snapshot left it and
// its random state is shared with every other clone: set the clock from
// the host and mix in host entropy, then force the CRNG to reseed.
void serve_sync(int conn, const json& req) {
  json result = json::object();
  if (req.contains("realtime_ns") && req["realtime_ns"].is_number_integer()) {
    int64_t ns = req["realtime_ns"].get<int64_t>();
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    result["clock_set"] = ::clock_settime(CLOCK_REALTIME, &ts) == 0;
  }
  std::string hex = json_field_or(req, "entropy", std::string());
  if (!hex.empty() && hex.size() % 2 == 0 && hex.size() <= 1024) {
    struct {
      int entropy_count;
      int buf_size;
      uint8_t buf[512];
    } pool{};
    for (size_t i = 0; i < hex.size() / 2; ++i) pool.buf[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
    pool.buf_size = static_cast<int>(hex.size() / 2);
    pool.entropy_count = pool.buf_size * 8;
    int fd = ::open("/dev/urandom", O_RDWR | O_CLOEXEC);
    bool ok = fd >= 0 && ::ioctl(fd, RNDADDENTROPY, &pool) == 0 && ::ioctl(fd, RNDRESEEDCRNG) == 0;
    if (fd >= 0) ::close(fd);
    result["reseeded"] = ok;
  }
  // Network interfaces: this clone's MACs, then a gratuitous ARP per
  // interface so peers learn where the clone is.
  std::vector<std::string> macs;
  if (req.contains("macs") && req["macs"].is_array() && req["macs"].size() <= 16) {
    for (const auto& m : req["macs"]) macs.push_back(m.is_string() ? m.get<std::string>() : "");
  }
  std::string error;
  int announced = set_macs_and_announce(macs, error);
  result["announced"] = announced;
  if (announced < 0) result["network_error"] = error;
  send_json(conn, Frame::kOk, result);
}

void serve(int conn) {
  agent::FrameReader reader;
  auto m = read_frame(conn, reader);
  if (!m) return;
  json req = json::parse(m->text(), nullptr, false);
  if (req.is_discarded() || !req.is_object()) return fail(conn, "request is not a JSON object");
  switch (m->type) {
    case Frame::kExec: return serve_exec(conn, req, reader);
    case Frame::kPut: return serve_put(conn, req, reader);
    case Frame::kGet: return serve_get(conn, req);
    case Frame::kSync: return serve_sync(conn, req);
    case Frame::kStart: return serve_start(conn, req);
    default: return fail(conn, "unknown request");
  }
}

}  // namespace

int agent_listen() {
  int s = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = agent::kAgentPort;
  if (::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(s, 128) != 0) {
    ::close(s);
    return -1;
  }
  return s;
}

// Requests served at once; more are answered "busy".
constexpr size_t kMaxRequests = 128;

void serve_agent(int s) {
  ::prctl(PR_SET_NAME, "snapvm-agent");
  if (FILE* f = std::fopen("/run/snapvm-agent.pid", "w")) {
    std::fprintf(f, "%d\n", ::getpid());
    std::fclose(f);
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::set<pid_t> running;  // request handlers not yet reaped
  for (;;) {
    for (pid_t done; (done = ::waitpid(-1, nullptr, WNOHANG)) > 0;) running.erase(done);
    sockaddr_vm peer{};
    socklen_t len = sizeof peer;
    int c = ::accept4(s, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      ::sleep(1);
      continue;
    }
    // Only the host may drive the agent (it runs commands as root): a
    // process inside the guest reaching port 1024 over vsock loopback is
    // refused. On the host, the VM's vsock socket is its owner's alone.
    if (peer.svm_family != AF_VSOCK || peer.svm_cid != VMADDR_CID_HOST) {
      ::close(c);
      continue;
    }
    for (pid_t done; (done = ::waitpid(-1, nullptr, WNOHANG)) > 0;) running.erase(done);
    if (running.size() >= kMaxRequests) {
      fail(c, "the agent is busy: " + std::to_string(kMaxRequests) + " requests are running");
      ::close(c);
      continue;
    }
    pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_NAME, "snapvm-request");
      ::close(s);
      serve(c);
      ::shutdown(c, SHUT_WR);
      ::close(c);
      ::_exit(0);
    }
    if (pid > 0) running.insert(pid);
    ::close(c);
  }
}

}  // namespace snapvm::guest
