// The per-VM control socket: newline-delimited JSON requests and replies on
// a Unix socket (docs/control-api.md). Serves pause, resume, snapshot and
// info from its own thread while the VM runs, on the shared line server
// (base/line_server.h), answering each request before the next.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/line_server.h"
#include "base/result.h"
#include "base/thread_annotations.h"
#include "vmm/machine.h"

namespace snapvm {

// What `info` says of where the VM came from, beside what the machine knows.
struct ControlIdentity {
  std::string name;    // the VM's name (--name), or empty
  std::string origin;  // "kernel PATH" or "snapshot PATH"
};

// Subscribers to the event stream at once; more are refused (each holds a
// connection of the 16 the socket serves).
inline constexpr size_t kMaxEventSubscribers = 8;

class ControlServer {
 public:
  static Result<std::unique_ptr<ControlServer>> start(const std::string& path, Machine& machine,
                                                      ControlIdentity identity = {});
  ~ControlServer();

  // Handles one request line; public so tests can drive it without a socket.
  // Never throws: any failure becomes an error reply.
  std::string handle(const std::string& request_line);

  // Tells the event stream's subscribers the VM has ended (`reason`: power
  // off, reset, crash, stopped, or the error), before the socket goes.
  void announce_exit(const std::string& reason, int status) EXCLUDES(events_mu_);

 private:
  ControlServer(std::string path, Machine& machine, ControlIdentity identity)
      : path_(std::move(path)), machine_(machine), identity_(std::move(identity)) {}
  std::string handle_request(const std::string& request_line);
  // Subscribes the request's connection; the first line says so (or why not).
  void subscribe(const LineServer::Reply& reply) EXCLUDES(events_mu_);
  void publish(nlohmann::json event) EXCLUDES(events_mu_);
  void publish_locked(nlohmann::json event) REQUIRES(events_mu_);

  std::string path_;
  Machine& machine_;
  const ControlIdentity identity_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  Mutex events_mu_;  // the server's thread subscribes; the runner's announces the exit
  std::vector<LineServer::Reply> subscribers_ GUARDED_BY(events_mu_);
  bool ended_ GUARDED_BY(events_mu_) = false;  // announce_exit has run
  std::unique_ptr<LineServer> server_;  // set once the socket is bound
  std::thread thread_;
};

}  // namespace snapvm
