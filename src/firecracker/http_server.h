// Serves an Api as HTTP/1.1 on a Unix socket (Boost.Beast), as Firecracker's
// --api-sock does: bodies and headers bounded, slow clients cut off, a
// bounded number of connections, every failure a fault body. One thread
// serves every connection, so requests reach the Api one at a time.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "base/result.h"
#include "firecracker/api.h"

namespace snapvm::firecracker {

class HttpServer {
 public:
  // Connections served at once; more are closed on arrival.
  static constexpr int kMaxClients = 16;

  // Binds `socket_path` (refusing one that exists, as Firecracker does) and
  // serves from its own thread, which enters the control seccomp filter.
  static Result<std::unique_ptr<HttpServer>> start(const std::string& socket_path, Api& api);
  ~HttpServer();  // stops serving and removes the socket

 private:
  struct Impl;
  HttpServer(std::string path, std::unique_ptr<Impl> impl);
  std::string path_;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace snapvm::firecracker
