// A server of newline-delimited requests on a listening Unix socket, for the
// per-VM control socket and the pool's socket. One thread (the caller of
// serve()) serves every connection, each with its own input and output
// buffer, so a client that sends half a line, trickles, or never reads
// holds up no other.
//
// A handler may answer at once or later, from any thread (a pool's take
// waits for a clone): it gets a Reply it may keep. Answering wakes the
// serving thread, which queues the line for its connection and sends it
// without blocking; a peer that does not take it within the send deadline
// is dropped. Requests of one connection are answered one at a time, in
// order: the next line is handed to the handler once the previous answer
// has been sent.
//
// Limits, each answered with one refusal line (the caller's format) before
// the connection is closed: a request line longer than max_request_bytes;
// a request not complete within the request deadline (the whole line, not
// each read: a byte every few seconds does not keep a connection); at the
// connection limit, either the newcomer is refused, or (evict_idle_at_limit)
// the connection that has waited longest for its request makes way, and
// only when every connection has a request in hand is the newcomer refused.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/unique_fd.h"

namespace snapvm {

// Bytes of streamed lines a connection may have waiting to be sent.
inline constexpr size_t kMaxStreamBacklog = 256 * 1024;

struct LineServerOptions {
  size_t max_request_bytes = 4096;
  size_t max_connections = 64;
  // The whole request line must arrive within this, counted from when the
  // server began waiting for it. None: an idle connection may stay open.
  std::optional<std::chrono::milliseconds> request_deadline;
  // A peer that takes none of its queued output for this long is dropped.
  std::chrono::milliseconds send_deadline{5000};
  // One request per connection (closed after its answer; a last line
  // without its newline at the end of input is still a request), or many.
  bool one_request_per_connection = false;
  bool evict_idle_at_limit = false;
  // Why a newcomer is refused at the connection limit.
  std::string busy_reason = "busy: every connection is being answered (too many requests at once)";
};

class LineServer {
 private:
  struct Mailbox;  // answers from other threads on their way to the serving thread

 public:
  // The answer to one request. Copyable, and callable from any thread, any
  // number of times: only the first answer counts, and an answer for a
  // connection that has closed, or a server that is gone, is dropped (the
  // handle holds the server's mailbox weakly).
  class Reply {
   public:
    void send(std::string line) const;  // one line, without its newline
    // A line sent before the answer, which stays to come (an event stream:
    // the control socket's `events`). Lines are sent in the order given; a
    // peer that lets kMaxStreamBacklog bytes pile up, or takes none within
    // the send deadline, is dropped. An answer (send) ends the stream.
    void stream(std::string line) const;
    // False once its connection has closed before the answer (or the server
    // is gone): work done only for this answer can be left undone.
    bool wanted() const;

   private:
    friend class LineServer;
    Reply(std::weak_ptr<Mailbox> mailbox, uint64_t ticket) : mailbox_(std::move(mailbox)), ticket_(ticket) {}
    std::weak_ptr<Mailbox> mailbox_;
    uint64_t ticket_;
  };

  // Called on the serving thread for each request line (without its
  // newline); it must not block: a slow answer is given later through
  // `reply`. An exception becomes a refusal line.
  using Handler = std::function<void(std::string_view line, Reply reply)>;
  // A request refused before the handler saw it: the reason as an answer line.
  using Refusal = std::function<std::string(std::string_view why)>;

  LineServer(UniqueFd listener, Handler handler, Refusal refusal, LineServerOptions options = {});
  // Closes every connection (close_all()).
  ~LineServer();
  LineServer(const LineServer&) = delete;
  LineServer& operator=(const LineServer&) = delete;

  // Serves on the calling thread until stop() is called or `stop_fd` (e.g.
  // a signalfd; -1: none) becomes readable. Connections stay open after it
  // returns, so that answers given later (a pool failing its waiting takes
  // as it shuts down) still reach them through close_all().
  void serve(int stop_fd);
  // Thread-safe; a handler may call it.
  void stop();
  // Queues the answers given so far, sends each connection what its socket
  // takes at once, and closes every connection. Not while serve() runs.
  void close_all();

 private:
  using Clock = std::chrono::steady_clock;
  // Touched only by the serving thread: no lock.
  struct Connection {
    UniqueFd fd;
    std::string in, out;
    enum class State { kReading, kAnswering } state = State::kReading;
    uint64_t ticket = 0;              // of the request being answered
    Clock::time_point waiting_since;  // for its request (the request deadline)
    Clock::time_point send_by;        // while `out` holds bytes
    bool input_ended = false;         // the peer sent all it will send
    bool close_when_sent = false;     // its last answer is in `out`
    bool closed = false;              // to be removed
  };

  void accept_new();
  void admit(UniqueFd fd);
  bool advance(Connection& c);  // true: it handed a request to the handler
  void dispatch(Connection& c, std::string line);
  void on_readable(Connection& c);
  void deliver_answers();
  void answer(Connection& c, std::string line);
  void stream_to(Connection& c, std::string line);
  void flush(Connection& c);
  void refuse(Connection& c, std::string_view why);
  void check_deadlines(Clock::time_point now);
  int poll_timeout_ms(Clock::time_point now) const;

  const UniqueFd listener_;
  const Handler handler_;
  const Refusal refusal_;
  const LineServerOptions o_;
  const std::shared_ptr<Mailbox> mailbox_;
  std::map<uint64_t, Connection> conns_;  // by id: oldest first
  uint64_t next_id_ = 1, next_ticket_ = 1;
  Clock::time_point accept_paused_until_{};  // out of descriptors: accept again later
};

}  // namespace snapvm
