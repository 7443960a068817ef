// The per-VM control socket: newline-delimited JSON requests and replies on
// a Unix socket (docs/control-api.md). Serves pause, resume, snapshot and
// info from its own thread while the VM runs, on the shared line server
// (base/line_server.h), answering each request before the next.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "base/line_server.h"
#include "base/result.h"
#include "vmm/machine.h"

namespace snapvm {

class ControlServer {
 public:
  static Result<std::unique_ptr<ControlServer>> start(const std::string& path, Machine& machine);
  ~ControlServer();

  // Handles one request line; public so tests can drive it without a socket.
  // Never throws: any failure becomes an error reply.
  std::string handle(const std::string& request_line);

 private:
  ControlServer(std::string path, Machine& machine) : path_(std::move(path)), machine_(machine) {}
  std::string handle_request(const std::string& request_line);

  std::string path_;
  Machine& machine_;
  std::unique_ptr<LineServer> server_;  // set once the socket is bound
  std::thread thread_;
};

}  // namespace snapvm
