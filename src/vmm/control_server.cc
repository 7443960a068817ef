#include "vmm/control_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/control_protocol.h"
#include "base/unix_socket.h"
#include "sandbox/seccomp.h"

namespace snapvm {
namespace {

using nlohmann::json;
// Connections served at once; more are told so and closed.
constexpr size_t kMaxControlClients = 16;

json error_reply(const std::string& message) { return {{"ok", false}, {"error", message}}; }

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& path, Machine& machine) {
  std::unique_ptr<ControlServer> s(new ControlServer(path, machine));
  s->listener_ = SNAPVM_TRY(listen_unix(path, 16, 0600, "control socket"));  // the VM's owner only
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
  if (listener_.valid()) ::unlink(path_.c_str());  // never a path this server did not take
}

void ControlServer::serve() {
  sandbox::enter_or_die(sandbox::ThreadKind::kControl);
  // Every client is served from this one thread, each with its own buffer:
  // a client that connects and says nothing (or never reads) holds up no
  // other. Requests run one at a time, in arrival order.
  struct Client {
    UniqueFd fd;
    std::string buf;
  };
  std::vector<Client> clients;
  char chunk[4096];
  for (;;) {
    std::vector<pollfd> fds = {{stop_fd_.get(), POLLIN, 0}, {listener_.get(), POLLIN, 0}};
    for (const auto& c : clients) fds.push_back({c.fd.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) continue;
    if (fds[0].revents) return;
    std::vector<bool> drop(clients.size(), false);
    for (size_t i = 0; i < clients.size(); ++i) {
      if (!fds[i + 2].revents) continue;
      Client& c = clients[i];
      ssize_t n = ::recv(c.fd.get(), chunk, sizeof chunk, MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {
        drop[i] = true;
        continue;
      }
      c.buf.append(chunk, static_cast<size_t>(n));
      size_t nl;
      while (!drop[i] && (nl = c.buf.find('\n')) != std::string::npos) {
        std::string reply = handle(c.buf.substr(0, nl)) + "\n";
        c.buf.erase(0, nl + 1);
        // Replies are small; a client that does not read them is dropped
        // rather than allowed to block the server.
        if (::send(c.fd.get(), reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
            static_cast<ssize_t>(reply.size())) {
          drop[i] = true;
        }
      }
      if (!drop[i] && c.buf.size() > kMaxControlRequestBytes) {
        std::string reply = error_reply(fmt::format("request over {} bytes", kMaxControlRequestBytes)).dump() + "\n";
        (void)!::send(c.fd.get(), reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        drop[i] = true;
      }
    }
    for (size_t i = clients.size(); i-- > 0;) {
      if (drop[i]) clients.erase(clients.begin() + static_cast<ptrdiff_t>(i));
    }
    if (fds[1].revents) {
      int c = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c >= 0) {
        UniqueFd conn(c);
        if (clients.size() < kMaxControlClients) {
          clients.push_back({std::move(conn), {}});
        } else {
          std::string reply = error_reply("too many control clients").dump() + "\n";
          (void)!::send(c, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
      }
    }
  }
}

std::string ControlServer::handle(const std::string& line) {
  try {
    return handle_request(line);
  } catch (const std::exception& e) {
    // A request must never take the VM down with it.
    return error_reply(fmt::format("internal error: {}", e.what())).dump();
  }
}

std::string ControlServer::handle_request(const std::string& line) {
  auto req = parse_control_request(line);
  if (!req) return error_reply(req.error().describe()).dump();
  switch (req->op) {
    case ControlRequest::Op::kInfo: {
      json fwds = json::array();
      for (const auto& f : machine_.port_forwards()) {
        fwds.push_back({{"host_address", f.host_address}, {"host_port", f.host_port}, {"guest_port", f.guest_port}});
      }
      json reply{{"ok", true},
                 {"state", machine_.paused() ? "paused" : "running"},
                 {"vcpus", machine_.vcpu_count()},
                 {"mem_bytes", machine_.mem_bytes()},
                 {"dirty_tracking", machine_.tracking_dirty()},
                 {"dirty_base", machine_.dirty_base()},
                 {"port_forwards", fwds},
                 {"devices", machine_.describe_devices()}};
      // Where a hung guest is: the vCPUs' registers can only be read paused.
      if (auto where = machine_.describe_vcpus()) reply["vcpus_at"] = *where;
      return reply.dump();
    }
    case ControlRequest::Op::kPause: {
      auto r = machine_.pause();
      return r ? json{{"ok", true}, {"state", "paused"}}.dump() : error_reply(r.error().describe()).dump();
    }
    case ControlRequest::Op::kResume: {
      auto r = machine_.resume();
      return r ? json{{"ok", true}, {"state", "running"}}.dump() : error_reply(r.error().describe()).dump();
    }
    case ControlRequest::Op::kSnapshot: {
      auto live = machine_.snapshot_live(req->path, req->diff_from, req->resume);
      if (!live) return error_reply(live.error().describe()).dump();
      const WriteStats& stats = live->stats;
      // A diff written while the guest ran paused it only for the copy.
      json pause_breakdown{{"capture", live->capture_ms}, {"dirty_log", live->dirty_log_ms}};
      if (live->written_while_running) {
        pause_breakdown["copy"] = live->copy_ms;
      } else {
        pause_breakdown["write"] = live->write_ms;
      }
      return json{{"ok", true},
                  {"path", req->path},
                  {"state", req->resume ? "running" : "paused"},
                  {"ram_bytes", stats.ram_bytes},
                  {"data_bytes", stats.data_bytes},
                  {"file_bytes", stats.file_bytes},
                  {"written_bytes", stats.written_bytes},
                  {"diff", !req->diff_from.empty()},
                  {"reflinked", stats.reflinked},
                  {"holes_punched_bytes", stats.holes_punched_bytes},
                  {"pause_ms", live->pause_ms},
                  {"pause_breakdown_ms", pause_breakdown},
                  {"written_while_running_ms", live->written_while_running ? live->write_ms : 0.0},
                  {"total_ms", live->total_ms}}
          .dump();
    }
  }
  return error_reply("unknown request").dump();
}

}  // namespace snapvm
