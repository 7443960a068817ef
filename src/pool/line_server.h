// A server of one-line requests on a listening Unix socket (the pool's
// socket): each connection sends one line, gets one line back, and ends.
// The clients are the socket's owner (it is 0600), but a stuck or slow one
// must not hold the server: a whole request must arrive within a deadline
// (not each read, so a byte every few seconds does not keep a connection
// for hours), and at the connection limit the connection that has waited
// longest for its request is closed to make way for a new one. Only when
// every connection is being answered (a take waiting for a clone) is a
// newcomer refused, with one line.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <condition_variable>
#include <list>
#include <string>
#include <string_view>

#include "base/thread_annotations.h"
#include "base/unique_fd.h"

namespace snapvm::pool {

struct LineServerLimits {
  size_t max_request_bytes = 4096;
  size_t max_connections = 64;
  std::chrono::milliseconds request_deadline{5000};  // for the whole line, and again for the answer
};

class LineServer {
 public:
  // The answer to one request line (without its newline); runs on the
  // connection's own thread, so it may wait. Setting `stop_serving` ends
  // serve() once the answer is sent.
  using Handler = std::function<std::string(std::string_view line, bool& stop_serving)>;
  // A request refused before the handler saw it: the reason as an answer line.
  using Refusal = std::function<std::string(std::string_view why)>;

  LineServer(UniqueFd listener, Handler handler, Refusal refusal, LineServerLimits limits = {});
  ~LineServer() NO_THREAD_SAFETY_ANALYSIS;  // waits for every connection's thread (unique_lock: unchecked)

  // Serves until stop() is called or `stop_fd` (e.g. a signalfd; -1: none)
  // becomes readable.
  void serve(int stop_fd);
  // Thread-safe; a handler may call it.
  void stop();

 private:
  struct Connection {
    int fd;
    std::chrono::steady_clock::time_point accepted;
    bool reading = true;   // still waiting for its request line
    bool evicted = false;  // closed to make way for a newer connection
  };
  void admit(UniqueFd conn) EXCLUDES(mu_);
  void run(std::list<Connection>::iterator self) EXCLUDES(mu_);

  const UniqueFd listener_;
  const Handler handler_;
  const Refusal refusal_;
  const LineServerLimits limits_;
  UniqueFd wake_;  // eventfd: stop() was called
  Mutex mu_;
  std::condition_variable_any all_done_;
  std::list<Connection> connections_ GUARDED_BY(mu_);  // oldest first
};

}  // namespace snapvm::pool
