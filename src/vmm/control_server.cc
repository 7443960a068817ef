#include "vmm/control_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include <nlohmann/json.hpp>

namespace snapvm {
namespace {

using nlohmann::json;
constexpr size_t kMaxRequestBytes = 64 * 1024;

json error_reply(const std::string& message) { return {{"ok", false}, {"error", message}}; }

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& path, Machine& machine) {
  std::unique_ptr<ControlServer> s(new ControlServer(path, machine));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return make_error(ErrorCode::kInvalidArgument, "control socket path {} is too long", path);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_error("socket(AF_UNIX)");
  s->listener_.reset(fd);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0) {
    return errno_error(fmt::format("control socket {}", path));
  }
  ::chmod(path.c_str(), 0600);  // the VM's owner only
  int stop = ::eventfd(0, EFD_CLOEXEC);
  if (stop < 0) return errno_error("eventfd");
  s->stop_fd_.reset(stop);
  ControlServer* raw = s.get();
  s->thread_ = std::thread([raw] { raw->serve(); });
  return s;
}

ControlServer::~ControlServer() {
  uint64_t one = 1;
  (void)!::write(stop_fd_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
}

void ControlServer::serve() {
  for (;;) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents) return;
    int c = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    UniqueFd conn(c);
    // One client at a time, one request per line, until it hangs up.
    std::string buf;
    char chunk[4096];
    for (;;) {
      pollfd p[2] = {{c, POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) continue;
      if (p[1].revents) return;
      ssize_t n = ::recv(c, chunk, sizeof chunk, 0);
      if (n <= 0) break;
      buf.append(chunk, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        std::string reply = handle(buf.substr(0, nl)) + "\n";
        buf.erase(0, nl + 1);
        (void)!::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      }
      if (buf.size() > kMaxRequestBytes) {
        std::string reply = error_reply("request too long").dump() + "\n";
        (void)!::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
        break;
      }
    }
  }
}

std::string ControlServer::handle(const std::string& line) {
  json req = json::parse(line, nullptr, false);
  if (req.is_discarded() || !req.is_object() || !req.contains("op") || !req["op"].is_string()) {
    return error_reply("expected a JSON object with \"op\"").dump();
  }
  std::string op = req["op"];
  if (op == "info") {
    json fwds = json::array();
    for (const auto& f : machine_.port_forwards()) {
      fwds.push_back({{"host_address", f.host_address}, {"host_port", f.host_port}, {"guest_port", f.guest_port}});
    }
    return json{{"ok", true},
                {"state", machine_.paused() ? "paused" : "running"},
                {"vcpus", machine_.vcpu_count()},
                {"mem_bytes", machine_.mem_bytes()},
                {"dirty_tracking", machine_.tracking_dirty()},
                {"dirty_base", machine_.dirty_base()},
                {"port_forwards", fwds}}
        .dump();
  }
  if (op == "pause") {
    auto r = machine_.pause();
    return r ? json{{"ok", true}, {"state", "paused"}}.dump() : error_reply(r.error().describe()).dump();
  }
  if (op == "resume") {
    auto r = machine_.resume();
    return r ? json{{"ok", true}, {"state", "running"}}.dump() : error_reply(r.error().describe()).dump();
  }
  if (op == "snapshot") {
    if (!req.contains("path") || !req["path"].is_string() || req["path"].get<std::string>().empty()) {
      return error_reply("snapshot: \"path\" is required").dump();
    }
    std::string diff_from;
    if (req.contains("diff_from")) {
      if (!req["diff_from"].is_string() || req["diff_from"].get<std::string>().empty()) {
        return error_reply("snapshot: \"diff_from\" must be a snapshot path").dump();
      }
      diff_from = req["diff_from"].get<std::string>();
    }
    bool resume = req.value("resume", false);
    auto live = machine_.snapshot_live(req["path"].get<std::string>(), diff_from, resume);
    if (!live) return error_reply(live.error().describe()).dump();
    const WriteStats& stats = live->stats;
    return json{{"ok", true},
                {"path", req["path"]},
                {"state", resume ? "running" : "paused"},
                {"ram_bytes", stats.ram_bytes},
                {"data_bytes", stats.data_bytes},
                {"file_bytes", stats.file_bytes},
                {"written_bytes", stats.written_bytes},
                {"diff", !diff_from.empty()},
                {"reflinked", stats.reflinked},
                {"holes_punched_bytes", stats.holes_punched_bytes},
                {"pause_ms", live->pause_ms},
                {"pause_breakdown_ms",
                 {{"capture", live->capture_ms}, {"dirty_log", live->dirty_log_ms}, {"write", live->write_ms}}},
                {"total_ms", live->total_ms}}
        .dump();
  }
  return error_reply("unknown op '" + op + "' (info, pause, resume, snapshot)").dump();
}

}  // namespace snapvm
