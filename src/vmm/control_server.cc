#include "vmm/control_server.h"

#include <unistd.h>

#include <chrono>
#include <string_view>

#include <nlohmann/json.hpp>

#include "control/control_protocol.h"
#include "base/unix_socket.h"
#include "sandbox/seccomp.h"

namespace snapvm {
namespace {

using nlohmann::json;
// Connections served at once; more are told so and closed.
constexpr size_t kMaxControlClients = 16;

json error_reply(const std::string& message) { return {{"ok", false}, {"error", message}}; }

// A reply or event as one line. Paths and guest-derived text may hold
// bytes that are not UTF-8: replaced, never a throw (a throw in an event
// at the VM's end would escape the runner).
std::string line_of(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& path, Machine& machine,
                                                            ControlIdentity identity) {
  std::unique_ptr<ControlServer> s(new ControlServer(path, machine, std::move(identity)));
  auto listener = SNAPVM_TRY(listen_unix(path, 16, 0600, "control socket"));  // the VM's owner only
  LineServerOptions options;
  options.max_request_bytes = kMaxControlRequestBytes;
  options.max_connections = kMaxControlClients;
  options.busy_reason = "too many control clients";
  // No request deadline: a client may keep its connection open and idle
  // (a session of requests); one that never reads is dropped after the
  // send deadline. But 16 idle connections must not lock out the 17th
  // (the VM's `snapvm snapshot` when it matters): at the limit the one
  // idle longest makes way. Requests run one at a time, in arrival order,
  // on the server's thread: a snapshot holds the others back, as it must.
  options.evict_idle_at_limit = true;
  ControlServer* raw = s.get();
  s->server_ = std::make_unique<LineServer>(
      std::move(listener),
      [raw](std::string_view line, const LineServer::Reply& reply) {
        // The one request answered by a stream rather than a line.
        if (auto req = parse_control_request(line); req && req->op == ControlRequest::Op::kEvents) {
          raw->subscribe(reply);
          return;
        }
        reply.send(raw->handle(std::string(line)));
      },
      [](std::string_view why) { return line_of(error_reply(std::string(why))); }, options);
  s->thread_ = std::thread([raw] {
    sandbox::enter_or_die(sandbox::ThreadKind::kControl);
    raw->server_->serve(-1);
  });
  return s;
}

ControlServer::~ControlServer() {
  if (!server_) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
  ::unlink(path_.c_str());  // never a path this server did not take
}

std::string ControlServer::handle(const std::string& line) {
  try {
    return handle_request(line);
  } catch (const std::exception& e) {
    // A request must never take the VM down with it.
    return line_of(error_reply(fmt::format("internal error: {}", e.what())));
  }
}

std::string ControlServer::handle_request(const std::string& line) {
  auto req = parse_control_request(line);
  if (!req) return line_of(error_reply(req.error().describe()));
  switch (req->op) {
    case ControlRequest::Op::kInfo: {
      json fwds = json::array();
      for (const auto& f : machine_.port_forwards()) {
        fwds.push_back({{"host_address", f.host_address}, {"host_port", f.host_port}, {"guest_port", f.guest_port}});
      }
      json reply{{"ok", true},
                 {"name", identity_.name},
                 {"pid", ::getpid()},
                 {"origin", identity_.origin},
                 {"uptime_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now() - started_)
                                   .count()},
                 {"state", machine_.paused() ? "paused" : "running"},
                 {"vcpus", machine_.vcpu_count()},
                 {"mem_bytes", machine_.mem_bytes()},
                 {"dirty_tracking", machine_.tracking_dirty()},
                 {"dirty_base", machine_.dirty_base()},
                 {"port_forwards", fwds},
                 {"devices", machine_.describe_devices()}};
      // Where a hung guest is: the vCPUs' registers can only be read paused.
      if (auto where = machine_.describe_vcpus()) reply["vcpus_at"] = *where;
      return line_of(reply);
    }
    case ControlRequest::Op::kPause: {
      auto r = machine_.pause();
      if (!r) return line_of(error_reply(r.error().describe()));
      publish({{"event", "paused"}});
      return line_of(json{{"ok", true}, {"state", "paused"}});
    }
    case ControlRequest::Op::kResume: {
      auto r = machine_.resume();
      if (!r) return line_of(error_reply(r.error().describe()));
      publish({{"event", "resumed"}});
      return line_of(json{{"ok", true}, {"state", "running"}});
    }
    case ControlRequest::Op::kShutdown: {
      // A request, not a stop: the guest decides; `snapvm stop` waits and
      // then kills what did not listen.
      auto r = machine_.press_power_button();
      if (!r) return line_of(error_reply(r.error().describe()));
      publish({{"event", "shutdown_requested"}});
      return line_of(json{{"ok", true}, {"state", machine_.paused() ? "paused" : "running"}});
    }
    case ControlRequest::Op::kEvents:
      return line_of(error_reply("events: a stream, subscribed on the socket only"));
    case ControlRequest::Op::kSnapshot: {
      const bool was_paused = machine_.paused();
      auto live = machine_.snapshot_live(req->path, req->diff_from, req->resume);
      if (!live) return line_of(error_reply(live.error().describe()));
      if (!was_paused) publish({{"event", "paused"}});
      publish({{"event", "snapshot"}, {"path", req->path}, {"diff", !req->diff_from.empty()}});
      if (req->resume) publish({{"event", "resumed"}});
      const WriteStats& stats = live->stats;
      // A diff written while the guest ran paused it only for the copy.
      json pause_breakdown{{"capture", live->capture_ms}, {"dirty_log", live->dirty_log_ms}};
      if (live->written_while_running) {
        pause_breakdown["copy"] = live->copy_ms;
      } else {
        pause_breakdown["write"] = live->write_ms;
      }
      return line_of(json{{"ok", true},
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
                  {"total_ms", live->total_ms}});
    }
  }
  return line_of(error_reply("unknown request"));
}

void ControlServer::subscribe(const LineServer::Reply& reply) {
  MutexLock lock(events_mu_);
  if (ended_) {  // the VM has ended: nothing more will come
    reply.send(line_of(json{{"ok", true}, {"events", false}, {"state", "ended"}}));
    return;
  }
  // Subscribers that hung up make way (their empty answer settles them).
  std::erase_if(subscribers_, [](const LineServer::Reply& r) {
    if (r.wanted()) return false;
    r.send("");
    return true;
  });
  if (subscribers_.size() >= kMaxEventSubscribers) {
    reply.send(line_of(error_reply(fmt::format("events: {} subscribers already", kMaxEventSubscribers))));
    return;
  }
  reply.stream(line_of(json{{"ok", true}, {"events", true}, {"state", machine_.paused() ? "paused" : "running"}}));
  subscribers_.push_back(reply);
}

void ControlServer::publish(json event) {
  MutexLock lock(events_mu_);
  publish_locked(std::move(event));
}

void ControlServer::publish_locked(json event) {
  event["time_ms"] = unix_ms();
  const std::string line = line_of(event);
  std::erase_if(subscribers_, [&line](const LineServer::Reply& r) {
    if (!r.wanted()) {
      r.send("");
      return true;
    }
    r.stream(line);
    return false;
  });
}

void ControlServer::announce_exit(const std::string& reason, int status) {
  // One lock for the event and the ends of the streams, so no subscriber
  // comes in between: one that comes later is answered at once.
  MutexLock lock(events_mu_);
  publish_locked({{"event", "exited"}, {"reason", reason}, {"status", status}});
  ended_ = true;
  for (const auto& r : subscribers_) r.send(line_of(json{{"ok", true}, {"events", false}}));
  subscribers_.clear();
}

}  // namespace snapvm
