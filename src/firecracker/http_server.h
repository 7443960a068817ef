// Serves an Api as HTTP/1.1 on a Unix socket (Boost.Beast), as Firecracker's
// --api-sock does: bodies and headers bounded, each request read and each
// answer written within a deadline, a bounded number of connections (an idle
// one makes way for a new one), every failure a fault body. One thread
// serves every connection, so requests reach the Api one at a time.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "base/result.h"
#include "firecracker/api.h"

namespace snapvm::firecracker {

struct HttpLimits {
  // A whole request must arrive within this (not each read: a client that
  // trickles a byte at a time is cut too), and so must each answer leave.
  std::chrono::milliseconds request_deadline{5000};
  // Connections served at once. A connection beyond it closes the oldest one
  // that is idle or still sending its request; only when every connection is
  // being answered is the new one refused.
  int max_clients = 16;
};

class HttpServer {
 public:
  // Listens on `socket_path` (0600, as listen_unix does for every snapvm
  // socket: a stale socket file is replaced, one a live process serves is
  // refused) and serves from its own thread, which enters the control
  // seccomp filter.
  static Result<std::unique_ptr<HttpServer>> start(const std::string& socket_path, Api& api,
                                                   HttpLimits limits = {});
  ~HttpServer();  // stops serving and removes the socket

 private:
  struct Impl;
  HttpServer(std::string path, std::unique_ptr<Impl> impl);
  std::string path_;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace snapvm::firecracker
