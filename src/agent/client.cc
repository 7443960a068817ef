#include "agent/client.h"
#include "base/json_fields.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "agent/protocol.h"
#include "base/file_io.h"
#include "base/runtime_dir.h"

namespace snapvm::agent {
namespace {

using nlohmann::json;
constexpr size_t kChunk = 64 * 1024;

Status send_all(int fd, std::span<const uint8_t> data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("send to the guest agent");
    }
    data = data.subspan(static_cast<size_t>(n));
  }
  return {};
}

Status send_frame(int fd, Frame type, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out;
  append_frame(out, type, payload);
  return send_all(fd, out);
}

Status send_json(int fd, Frame type, const json& j) {
  std::string s = j.dump();
  return send_frame(fd, type, {reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

// The next frame; with a `stall` limit, a guest that sends nothing for that
// long is an error rather than a wait without end.
Result<FrameReader::Message> read_frame(int fd, FrameReader& r,
                                        std::chrono::milliseconds stall = std::chrono::milliseconds(0)) {
  for (;;) {
    if (auto m = r.next()) return *m;
    if (r.error()) return make_error(ErrorCode::kDataLoss, "the guest agent sent a malformed frame");
    if (stall.count() > 0) {
      pollfd p{fd, POLLIN, 0};
      int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(stall.count(), INT32_MAX)));
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) return errno_error("poll the guest agent");
      if (ready == 0) {
        return make_error(ErrorCode::kIo, "the guest agent sent nothing for {} ms; gave up", stall.count());
      }
    }
    uint8_t buf[kChunk];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("receive from the guest agent");
    if (n == 0) return make_error(ErrorCode::kIo, "the guest agent closed the connection mid-request");
    r.feed({buf, static_cast<size_t>(n)});
  }
}

Error agent_error(const FrameReader::Message& m) {
  json j = json::parse(m.text(), nullptr, false);
  std::string msg = j.is_object() ? json_field_or(j, "message", std::string("unknown error")) : m.text();
  return Error(ErrorCode::kFailedPrecondition, "guest: " + msg);
}

}  // namespace

std::string vsock_path_for(const std::string& vm) {
  if (vm.find('/') != std::string::npos || vm.ends_with(".vsock") || vm.ends_with(".sock")) return vm;
  return runtime_path(vm + ".vsock");
}

Result<UniqueFd> connect_vsock(const std::string& uds_path, uint32_t port, std::chrono::milliseconds timeout) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_error("socket(AF_UNIX)");
  UniqueFd s(fd);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (uds_path.size() >= sizeof addr.sun_path) {
    return make_error(ErrorCode::kInvalidArgument, "socket path {} is too long", uds_path);
  }
  std::memcpy(addr.sun_path, uds_path.data(), uds_path.size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return errno_error(fmt::format("connect to the VM's vsock socket {} (is the VM running?)", uds_path));
  }
  std::string line = fmt::format("CONNECT {}\n", port);
  SNAPVM_CHECK_OK(send_all(fd, {reinterpret_cast<const uint8_t*>(line.data()), line.size()}));
  // The reply is one line; read byte by byte so no stream data is consumed.
  std::string reply;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (reply.empty() || reply.back() != '\n') {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (r == 0) {
      return make_error(ErrorCode::kIo,
                        "nothing answered on guest vsock port {} within {:.3g} s: the guest is not up yet, or runs "
                        "no snapvm agent (`snapvm guest build` makes a guest with one)",
                        port, std::chrono::duration<double>(timeout).count());
    }
    char c;
    ssize_t n = ::recv(fd, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "guest vsock port {} refused the connection (nothing listens there: is the agent running?)",
                        port);
    }
    reply.push_back(c);
    if (reply.size() > 64) return make_error(ErrorCode::kDataLoss, "unexpected vsock reply");
  }
  if (!reply.starts_with("OK ")) return make_error(ErrorCode::kDataLoss, "unexpected vsock reply '{}'", reply);
  return s;
}

Result<ExecResult> exec(const std::string& uds_path, const ExecRequest& req, const OutputFn& on_stdout,
                        const OutputFn& on_stderr) {
  if (req.argv.empty()) return make_error(ErrorCode::kInvalidArgument, "exec: no command given");
  auto conn = SNAPVM_TRY(connect_vsock(uds_path, kAgentPort, req.agent_wait));
  json j = {{"argv", req.argv}, {"env", req.env}, {"timeout_ms", req.timeout.count()}};
  if (!req.cwd.empty()) j["cwd"] = req.cwd;
  if (!req.root.empty()) j["root"] = req.root;
  if (!req.user.empty()) j["user"] = req.user;
  SNAPVM_CHECK_OK(send_json(conn.get(), Frame::kExec, j));

  std::vector<uint8_t> outbox;  // frames not yet sent (stdin)
  bool stdin_open = req.stdin_fd >= 0;
  if (!stdin_open) append_frame(outbox, Frame::kStdinEof, std::span<const uint8_t>{});
  ::fcntl(conn.get(), F_SETFL, ::fcntl(conn.get(), F_GETFL) | O_NONBLOCK);
  FrameReader reader;
  uint8_t buf[kChunk];
  for (;;) {
    pollfd fds[2];
    nfds_t n = 0;
    fds[n++] = {conn.get(), static_cast<short>(POLLIN | (outbox.empty() ? 0 : POLLOUT)), 0};
    bool poll_stdin = stdin_open && outbox.size() < 4 * kChunk;
    if (poll_stdin) fds[n++] = {req.stdin_fd, POLLIN, 0};
    if (::poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      return errno_error("poll");
    }
    if (poll_stdin && fds[1].revents) {
      ssize_t r = ::read(req.stdin_fd, buf, sizeof buf);
      if (r > 0) {
        append_frame(outbox, Frame::kStdin, {buf, static_cast<size_t>(r)});
      } else if (r == 0 || errno != EINTR) {
        stdin_open = false;
        append_frame(outbox, Frame::kStdinEof, std::span<const uint8_t>{});
      }
    }
    if ((fds[0].revents & POLLOUT) && !outbox.empty()) {
      ssize_t w = ::send(conn.get(), outbox.data(), outbox.size(), MSG_NOSIGNAL);
      if (w > 0) outbox.erase(outbox.begin(), outbox.begin() + w);
      // A failed send shows up as EOF on the read side below.
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = ::recv(conn.get(), buf, sizeof buf, 0);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) return make_error(ErrorCode::kIo, "the guest agent closed the connection before the command ended");
      reader.feed({buf, static_cast<size_t>(r)});
      while (auto m = reader.next()) {
        switch (m->type) {
          case Frame::kStdout: if (on_stdout) on_stdout({reinterpret_cast<const char*>(m->payload.data()), m->payload.size()}); break;
          case Frame::kStderr: if (on_stderr) on_stderr({reinterpret_cast<const char*>(m->payload.data()), m->payload.size()}); break;
          case Frame::kError: return tl::unexpected(agent_error(*m));
          case Frame::kExit: {
            json e = json::parse(m->text(), nullptr, false);
            ExecResult res;
            if (e.is_object()) {
              res.exit_code = json_field_or(e, "code", -1);
              res.signal = json_field_or(e, "signal", 0);
              res.timed_out = json_field_or(e, "timed_out", false);
            }
            return res;
          }
          default: break;
        }
      }
      if (reader.error()) return make_error(ErrorCode::kDataLoss, "the guest agent sent a malformed frame");
    }
  }
}

Result<uint64_t> put_file(const std::string& uds_path, const std::string& host_path, const std::string& guest_path) {
  auto in = open_file(host_path, O_RDONLY);
  if (!in) return tl::unexpected(std::move(in.error()));
  struct stat st {};
  ::fstat(in->get(), &st);
  auto conn = SNAPVM_TRY(connect_vsock(uds_path, kAgentPort));
  SNAPVM_CHECK_OK(send_json(conn.get(), Frame::kPut, {{"path", guest_path}, {"mode", st.st_mode & 07777}}));
  uint8_t buf[kChunk];
  for (;;) {
    ssize_t n = ::read(in->get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(fmt::format("read {}", host_path));
    if (n == 0) break;
    SNAPVM_CHECK_OK(send_frame(conn.get(), Frame::kData, {buf, static_cast<size_t>(n)}));
  }
  SNAPVM_CHECK_OK(send_frame(conn.get(), Frame::kDataEnd, {}));
  FrameReader reader;
  auto m = SNAPVM_TRY(read_frame(conn.get(), reader));
  if (m.type == Frame::kError) return tl::unexpected(agent_error(m));
  json j = json::parse(m.text(), nullptr, false);
  return j.is_object() ? json_field_or(j, "bytes", uint64_t{0}) : 0;
}

namespace {

// The file a copy from the guest is written to: nameless until publish()
// gives it the target's name in one rename, so nothing at or beside the
// target (a symlink another user planted) is ever opened, and a copy that
// fails, or is killed, leaves nothing behind.
class IncomingFile {
 public:
  static Result<IncomingFile> create(const std::string& target) {
    IncomingFile f(target);
    int fd = ::open(parent_dir(target).c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
      // A filesystem without O_TMPFILE: a new file of an unguessable name
      // (mkostemp: O_EXCL, 0600), removed on every failure but a kill.
      std::string name = target + ".snapvm-part-XXXXXX";
      fd = ::mkostemp(name.data(), O_CLOEXEC);
      if (fd >= 0) f.named_ = name;
    }
    if (fd < 0) return errno_error(fmt::format("create a file beside {}", target));
    f.fd_.reset(fd);
    return f;
  }
  IncomingFile(IncomingFile&& other) noexcept
      : target_(std::move(other.target_)), named_(std::exchange(other.named_, {})), fd_(std::move(other.fd_)) {}
  IncomingFile& operator=(IncomingFile&&) = delete;
  ~IncomingFile() {
    if (!named_.empty()) ::unlink(named_.c_str());
  }
  int fd() const { return fd_.get(); }

  // Durable, then under the target's name (replacing whatever has it, a
  // symlink included, never following one).
  Status publish() {
    // 0600 while the bytes came in; now what a new file of this process gets.
    mode_t umask = ::umask(0);
    ::umask(umask);
    if (::fchmod(fd_.get(), 0644 & ~umask) != 0 || ::fsync(fd_.get()) != 0) return errno_error("write " + target_);
    if (named_.empty()) SNAPVM_CHECK_OK(link_into_directory());
    if (::rename(named_.c_str(), target_.c_str()) != 0) return errno_error("rename into " + target_);
    named_.clear();
    return fsync_parent_dir(target_);
  }

 private:
  explicit IncomingFile(std::string target) : target_(std::move(target)) {}

  // An O_TMPFILE file gets a fresh name of its own; linkat never replaces
  // or follows what is there, so a name taken already is just skipped.
  Status link_into_directory() {
    const std::string self = fmt::format("/proc/self/fd/{}", fd_.get());
    for (int attempt = 0; attempt < 16; ++attempt) {
      uint64_t r = 0;
      if (::getrandom(&r, sizeof r, 0) != sizeof r) return errno_error("getrandom");
      std::string name = fmt::format("{}.snapvm-part-{:016x}", target_, r);
      if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0) {
        named_ = std::move(name);
        return {};
      }
      if (errno != EEXIST) return errno_error("name the copy of " + target_);
    }
    return make_error(ErrorCode::kIo, "name the copy of {}: every name tried was taken", target_);
  }

  std::string target_;
  std::string named_;  // the file's name while it has one and is not yet the target's
  UniqueFd fd_;
};

}  // namespace

Result<uint64_t> get_file(const std::string& uds_path, const std::string& guest_path, const std::string& host_path,
                          const GetOptions& options) {
  auto out = SNAPVM_TRY(IncomingFile::create(host_path));
  auto conn = SNAPVM_TRY(connect_vsock(uds_path, kAgentPort));
  SNAPVM_CHECK_OK(send_json(conn.get(), Frame::kGet, {{"path", guest_path}}));
  uint64_t bytes = 0;
  FrameReader reader;
  for (;;) {
    auto m = SNAPVM_TRY(read_frame(conn.get(), reader, options.stall_timeout));
    if (m.type == Frame::kError) return tl::unexpected(agent_error(m));
    if (m.type == Frame::kDataEnd) break;
    if (m.type != Frame::kData) continue;
    if (m.payload.size() > options.max_bytes - bytes) {
      return make_error(ErrorCode::kInvalidArgument, "{} is over the limit of {} bytes (--max-size); nothing was kept",
                        guest_path, options.max_bytes);
    }
    SNAPVM_CHECK_OK(pwrite_all(out.fd(), m.payload, bytes));
    bytes += m.payload.size();
  }
  SNAPVM_CHECK_OK(out.publish());
  return bytes;
}

namespace {

Result<SyncResult> sync_once(const std::string& uds_path, const std::vector<std::string>& macs) {
  auto conn = SNAPVM_TRY(connect_vsock(uds_path, kAgentPort, std::chrono::seconds(2)));
  // A reply that never comes (the guest dropped the connection without a
  // word) must not hang the caller: the retry loop tries again.
  timeval limit{5, 0};
  ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  uint8_t entropy[64];
  if (::getrandom(entropy, sizeof entropy, 0) != sizeof entropy) return errno_error("getrandom");
  std::string hex;
  for (uint8_t b : entropy) hex += fmt::format("{:02x}", b);
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  int64_t ns = int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
  SNAPVM_CHECK_OK(send_json(conn.get(), Frame::kSync, {{"realtime_ns", ns}, {"entropy", hex}, {"macs", macs}}));
  FrameReader reader;
  auto m = SNAPVM_TRY(read_frame(conn.get(), reader));
  if (m.type == Frame::kError) return tl::unexpected(agent_error(m));
  json j = json::parse(m.text(), nullptr, false);
  SyncResult r;
  if (j.is_object()) {
    r.clock_set = json_field_or(j, "clock_set", false);
    r.reseeded = json_field_or(j, "reseeded", false);
    r.announced = json_field_or(j, "announced", 0);
    r.network_error = json_field_or(j, "network_error", std::string());
  }
  return r;
}

Result<int> start_once(const std::string& uds_path, const StartRequest& req) {
  auto conn = SNAPVM_TRY(connect_vsock(uds_path, kAgentPort, std::chrono::seconds(2)));
  timeval limit{10, 0};
  ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  json j = {{"argv", req.argv},         {"env", req.env},   {"tcp_ports", req.tcp_ports},
            {"poweroff_on_exit", req.poweroff_on_exit}};
  if (!req.cwd.empty()) j["cwd"] = req.cwd;
  if (!req.root.empty()) j["root"] = req.root;
  if (!req.user.empty()) j["user"] = req.user;
  SNAPVM_CHECK_OK(send_json(conn.get(), Frame::kStart, j));
  FrameReader reader;
  auto m = SNAPVM_TRY(read_frame(conn.get(), reader));
  if (m.type == Frame::kError) return tl::unexpected(agent_error(m));
  json r = json::parse(m.text(), nullptr, false);
  if (m.type != Frame::kOk || !r.is_object()) return make_error(ErrorCode::kDataLoss, "start: unexpected agent reply");
  return json_field_or(r, "pid", -1);
}

}  // namespace

Result<int> start_program(const std::string& uds_path, const StartRequest& req, std::chrono::milliseconds wait,
                          std::stop_token stop) {
  if (req.argv.empty()) return make_error(ErrorCode::kInvalidArgument, "start: no command given (the image names none)");
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    auto r = start_once(uds_path, req);
    // Only "not up yet" is worth another try; the agent's refusals are final.
    bool agent_refused = !r && r.error().code() == ErrorCode::kFailedPrecondition &&
                         r.error().describe().find("nothing listens") == std::string::npos;
    if (r || agent_refused || stop.stop_requested()) return r;
    if (std::chrono::steady_clock::now() >= deadline) {
      return make_error(ErrorCode::kIo,
                        "the guest's agent did not answer within {:.3g} s: the guest is not up, or runs no snapvm "
                        "agent (`snapvm guest build` makes a guest with one); last try: {}",
                        std::chrono::duration<double>(wait).count(), r.error().describe());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<SyncResult> sync_guest(const std::string& uds_path, std::chrono::milliseconds timeout,
                              const std::vector<std::string>& macs, std::stop_token stop) {
  // Right after a restore the guest may still be processing the vsock
  // transport reset, which drops connections made before it: retry.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto r = sync_once(uds_path, macs);
    if (r && (!r->clock_set || !r->reseeded)) {
      return make_error(ErrorCode::kFailedPrecondition, "the guest agent did not {}",
                        !r->clock_set ? "set its clock" : "reseed its random generator");
    }
    if (r || std::chrono::steady_clock::now() >= deadline || stop.stop_requested()) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace snapvm::agent
