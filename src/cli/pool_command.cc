#include "cli/pool_command.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "control/control_client.h"
#include "base/json_fields.h"
#include "base/line_server.h"
#include "base/runtime_dir.h"
#include "base/sd_notify.h"
#include "base/units.h"
#include "base/unix_socket.h"
#include "image/catalog.h"
#include "pool/pool.h"
#include "sandbox/seccomp.h"

namespace snapvm::cli {
namespace {

using nlohmann::json;

struct PoolCliOptions {
  std::string snapshot, socket, dir, allow_dir = image::default_store(), id, seccomp = "enforce";
  size_t size = 2, max = 8;
  std::vector<uint16_t> ports;
  double take_wait_s = 30;
  std::string max_memory;
  bool json_out = false;
  std::optional<double> wait_s;
};

// Requests on the pool socket are a line of JSON each, as on a VM's control
// socket; a client is the pool's owner (0600), but a bad or slow request is
// still one error line, never a crash or a held server (base/line_server.h).
constexpr size_t kMaxRequestBytes = 4096;
constexpr size_t kMaxConnections = 64;
constexpr std::chrono::milliseconds kRequestDeadline{5000};

// Answers are dumped with bad UTF-8 replaced: a clone id echoed from a
// request may hold any bytes, and a throwing dump would end the pool.
std::string dump(const json& reply) { return reply.dump(-1, ' ', false, json::error_handler_t::replace); }

json take_reply(const Result<pool::TakenClone>& c) {
  if (!c) return {{"ok", false}, {"error", c.error().describe()}};
  json addresses = json::object();
  for (const auto& [port, address] : c->addresses) addresses[std::to_string(port)] = address;
  return {{"ok", true},         {"id", c->id},           {"pid", c->pid},
          {"control", c->control}, {"vsock", c->vsock}, {"console", c->console},
          {"addresses", addresses}, {"resume_ms", c->resume_ms}, {"prepare_ms", c->prepare_ms}};
}

// Answers one request on the server's thread, except a take: the pool
// answers it from its hand-out thread once a clone is resumed or the wait
// is over, and the server serves others meanwhile.
void handle(pool::Pool& pool, LineServer& server, std::string_view line, const LineServer::Reply& reply) {
  auto answer = [&](const json& j) { reply.send(dump(j)); };
  json req = json::parse(line, nullptr, false);
  if (!req.is_object()) return answer({{"ok", false}, {"error", "a request is one JSON object per line"}});
  const std::string op = json_field_or(req, "op", std::string());
  if (op == "take") {
    std::optional<std::chrono::milliseconds> wait;
    if (int64_t ms = json_field_or(req, "wait_ms", int64_t{-1}); ms >= 0) {
      wait = std::chrono::milliseconds(std::min<int64_t>(ms, 3'600'000));
    }
    pool.take_async(
        wait, [reply](Result<pool::TakenClone> c) { reply.send(dump(take_reply(c))); },
        [reply] { return reply.wanted(); });
    return;
  }
  if (op == "release") {
    auto r = pool.release(json_field_or(req, "id", std::string()));
    return answer(r ? json{{"ok", true}} : json{{"ok", false}, {"error", r.error().describe()}});
  }
  if (op == "status") {
    auto s = pool.stats();
    json clones = json::array();
    for (const auto& c : s.clones) clones.push_back({{"id", c.id}, {"phase", c.phase}, {"pid", c.pid}});
    return answer({{"ok", true},       {"ready", s.ready},         {"starting", s.starting},
                   {"taken", s.taken}, {"started", s.started},     {"replaced", s.replaced},
                   {"failed_starts", s.failed_starts}, {"clones", clones}});
  }
  if (op == "stop") {
    answer({{"ok", true}});  // sent before serve() returns
    server.stop();
    return;
  }
  answer({{"ok", false}, {"error", "unknown op (take, release, status, stop)"}});
}

// Under a service manager (systemd's Type=notify, $NOTIFY_SOCKET): READY=1
// once the socket listens and the pool is filled (--size clones ready, or
// as many as its limits allow), polled from a thread of its own while the
// server serves; a pool that never fills never says it is ready (systemd's
// TimeoutStartSec= then fails the start). Its socket is made before the
// seccomp filter; sending needs only sendto, which the pool's filter allows.
class Readiness {
 public:
  Readiness(const ServiceNotifier& notifier, const pool::Pool& pool, const std::string& status) {
    if (!notifier.enabled()) return;
    thread_ = std::thread([this, &notifier, &pool, status] {
      while (!stop_.load()) {
        if (pool.stats().filled) {
          if (auto sent = notifier.notify("READY=1\nSTATUS=" + status); !sent) {
            fmt::print(stderr, "snapvm pool: {}\n", sent.error().describe());
          }
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }
  ~Readiness() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

int serve(const PoolCliOptions& o) {
  // $NOTIFY_SOCKET is read, and removed from the environment the clones
  // inherit, before any thread starts.
  auto notifier = ServiceNotifier::from_environment(/*unset_environment=*/true);
  if (!notifier) {
    fmt::print(stderr, "snapvm pool: {}\n", notifier.error().describe());
    return 1;
  }
  // Signals arrive through a signalfd; blocked before any thread starts so
  // that none of them takes one.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, s);
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  UniqueFd sigfd(::signalfd(-1, &signals, SFD_CLOEXEC));
  // The pool filters itself as its clones do (before its first thread).
  if (o.seccomp != "off") {
    if (auto s = sandbox::enable(o.seccomp == "log" ? sandbox::Mode::kLog : sandbox::Mode::kEnforce); !s) {
      fmt::print(stderr, "snapvm pool: {}\n", s.error().describe());
      return 1;
    }
  }

  pool::PoolOptions po;
  po.snapshot = o.snapshot;
  po.snapvm_binary = std::filesystem::read_symlink("/proc/self/exe").string();
  po.dir = o.dir.empty() ? runtime_path(fmt::format("pool-{}", ::getpid())) : o.dir;
  po.allow_dir = o.allow_dir;
  po.tcp_ports = o.ports;
  po.ready = o.size;
  po.max_clones = o.max;
  if (!o.max_memory.empty()) {
    auto bytes = parse_size_flag("--max-memory", o.max_memory);
    if (!bytes) return report_error(bytes.error().describe(), false, 2);
    po.max_memory = *bytes;
  }
  po.take_wait = std::chrono::milliseconds(static_cast<int64_t>(o.take_wait_s * 1000));
  po.seccomp = o.seccomp;
  po.enter_handout_thread = [] { sandbox::enter_or_die(sandbox::ThreadKind::kPool); };
  auto listener = listen_unix(o.socket, 128, 0600, "pool socket");
  if (!listener) {
    fmt::print(stderr, "snapvm pool: {}\n", listener.error().describe());
    return 1;
  }
  auto started = pool::Pool::start(po);
  if (!started) {
    ::unlink(o.socket.c_str());
    fmt::print(stderr, "snapvm pool: {}\n", started.error().describe());
    return 1;
  }
  std::unique_ptr<pool::Pool> pool = std::move(*started);
  fmt::print(stderr, "snapvm pool: serving {} on {}: {} ready, at most {} clones (clones' files in {})\n", o.snapshot,
             o.socket, o.size, o.max, po.dir);
  // Requests are served under the pool's filter from here on; the refill
  // thread, which starts clones (fork and exec), began before it.
  sandbox::enter_or_die(sandbox::ThreadKind::kPool);

  {
    LineServerOptions options;
    options.max_request_bytes = kMaxRequestBytes;
    options.max_connections = kMaxConnections;
    options.request_deadline = kRequestDeadline;
    options.send_deadline = kRequestDeadline;
    options.one_request_per_connection = true;
    options.evict_idle_at_limit = true;
    // The handler refers to the server it is given to (a `stop` request
    // stops it); it runs only inside serve().
    LineServer server(
        std::move(*listener),
        [&](std::string_view line, const LineServer::Reply& reply) { handle(*pool, server, line, reply); },
        [](std::string_view why) { return dump({{"ok", false}, {"error", std::string(why)}}); }, options);
    {
      Readiness readiness(*notifier, *pool, fmt::format("serving {} clones of {} on {}", o.size, o.snapshot, o.socket));
      server.serve(sigfd.get());
    }
    if (auto sent = notifier->notify("STOPPING=1\nSTATUS=stopping every clone"); !sent) {
      fmt::print(stderr, "snapvm pool: {}\n", sent.error().describe());
    }
    pool->refuse_takes();  // waiting takes fail now, each with its line,
    server.close_all();    // which reaches its client here
  }
  fmt::print(stderr, "snapvm pool: stopping every clone\n");
  pool->shutdown();
  pool.reset();
  ::unlink(o.socket.c_str());
  std::error_code ec;
  std::filesystem::remove(po.dir, ec);  // empty once every clone is gone
  return 0;
}

// One request on the pool's socket; `print` shows the reply, or with --json
// the reply is printed whole (errors as report_error's object).
int client(const PoolCliOptions& o, const json& req, const std::function<void(const json&)>& print) {
  auto r = control_request(o.socket, req, std::chrono::milliseconds(0), ControlPeer{"the pool socket", "the pool"});
  if (!r) return report_error("pool: " + r.error().describe(), o.json_out);
  if (o.json_out) {
    fmt::print("{}\n", dump(*r));
  } else {
    print(*r);
  }
  return 0;
}

// `snapvm pool status`'s human text.
void print_status(const json& j) {
  auto n = [&](const char* key) { return json_field_or(j, key, uint64_t{0}); };
  fmt::print("ready {}, starting {}, taken {} (started {}, replaced {}, failed starts {})\n", n("ready"), n("starting"),
             n("taken"), n("started"), n("replaced"), n("failed_starts"));
  auto it = j.find("clones");
  if (it == j.end() || !it->is_array() || it->empty()) return;
  fmt::print("{:<16} {:<10} {}\n", "ID", "PHASE", "PID");
  for (const auto& c : *it) {
    if (!c.is_object()) continue;
    fmt::print("{:<16} {:<10} {}\n", json_field_or(c, "id", std::string()), json_field_or(c, "phase", std::string()),
               json_field_or(c, "pid", int64_t{0}));
  }
}

}  // namespace

std::function<int()> register_pool_command(CLI::App& app) {
  auto o = std::make_shared<PoolCliOptions>();
  auto* pool = app.add_subcommand("pool", "Serve warm clones of a snapshot and hand them out");
  pool->require_subcommand(1);
  auto* serve_cmd = pool->add_subcommand(
      "serve", "Keep clones of SNAPSHOT restored and paused, hand one out per take, refill in the background");
  serve_cmd->add_option("SNAPSHOT", o->snapshot, "the warm snapshot (snapvm bake)")->required();
  serve_cmd->add_option("--socket", o->socket, "the pool's Unix socket (0600)")->required();
  serve_cmd->add_option("--size", o->size, "clones kept ready")->capture_default_str();
  serve_cmd->add_option("--max", o->max, "clones at most, ready and taken")->capture_default_str();
  serve_cmd->add_option("--max-memory", o->max_memory,
                        "guest RAM of all clones together at most, e.g. 8G (fewer clones than --max if need be)");
  serve_cmd->add_option("--port", o->ports, "a TCP port of the program to publish per clone; repeatable");
  serve_cmd->add_option("--dir", o->dir, "clones' sockets and consoles (default /run/snapvm/pool-PID)");
  serve_cmd->add_option("--allow-dir", o->allow_dir, "where the snapshot's disks may lie (its image store)")
      ->capture_default_str();
  serve_cmd->add_option("--take-wait", o->take_wait_s, "seconds a take waits for a ready clone")->capture_default_str();
  serve_cmd->add_option("--seccomp", o->seccomp, "seccomp filters of the pool and its clones: enforce, log, off")
      ->check(CLI::IsMember({"enforce", "log", "off"}))
      ->capture_default_str();
  auto* take = pool->add_subcommand("take", "Take a ready clone: prints its id and its published addresses");
  take->add_flag("--json", o->json_out, "print the whole reply (or the error) as one JSON object");
  take->add_option("--wait", o->wait_s, "seconds to wait for a ready clone (default: the pool's --take-wait)");
  auto* release = pool->add_subcommand("release", "Stop a taken clone");
  release->add_option("ID", o->id, "the clone's id (from take)")->required();
  auto* status = pool->add_subcommand("status", "Show the pool's counts and clones");
  status->add_flag("--json", o->json_out, "print the whole reply (or the error) as one JSON object");
  auto* stop = pool->add_subcommand("stop", "Stop the pool and every clone");
  for (auto* c : {take, release, status, stop}) {
    c->add_option("--socket", o->socket, "the pool's Unix socket")->required();
  }
  return [=]() -> int {
    if (serve_cmd->parsed()) return serve(*o);
    if (take->parsed()) {
      json req = {{"op", "take"}};
      if (o->wait_s) req["wait_ms"] = static_cast<int64_t>(*o->wait_s * 1000);
      return client(*o, req, [&](const json& j) {
        std::string addresses;
        if (auto it = j.find("addresses"); it != j.end() && it->is_object()) {
          for (const auto& [port, address] : it->items()) {
            if (address.is_string()) addresses += fmt::format(" {}={}", port, address.get<std::string>());
          }
        }
        fmt::print("{}{} vsock={} (resumed in {:.1f} ms; restored, given clock and entropy and paused in {:.0f} ms "
                   "before)\n", j.value("id", ""), addresses, j.value("vsock", ""), j.value("resume_ms", 0.0),
                   j.value("prepare_ms", 0.0));
      });
    }
    if (release->parsed()) return client(*o, {{"op", "release"}, {"id", o->id}}, [](const json&) {});
    if (status->parsed()) return client(*o, {{"op", "status"}}, print_status);
    if (stop->parsed()) return client(*o, {{"op", "stop"}}, [](const json&) {});
    return -1;
  };
}

}  // namespace snapvm::cli
