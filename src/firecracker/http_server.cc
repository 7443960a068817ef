#include "firecracker/http_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <list>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "base/unix_socket.h"
#include "sandbox/seccomp.h"

namespace snapvm::firecracker {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Socket = asio::local::stream_protocol;
using Stream = beast::basic_stream<Socket>;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kMaxHeaderBytes = 8 * 1024;
constexpr size_t kMaxDrainBytes = 1 << 20;

class Session;
// Every connection still open, oldest first. Only the server's one thread
// touches it (sessions add and remove themselves), so it needs no lock.
using SessionList = std::list<Session*>;

// One client connection: requests read and answered in turn (HTTP/1.1
// keep-alive); each request must arrive, and each answer leave, within the
// deadline (Beast's timeout covers the whole operation, every read in it).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Socket::socket socket, Api& api, SessionList& sessions, std::chrono::milliseconds deadline)
      : stream_(std::move(socket)), api_(api), sessions_(sessions), deadline_(deadline) {
    self_in_list_ = sessions_.insert(sessions_.end(), this);
  }
  ~Session() { sessions_.erase(self_in_list_); }

  void read() {
    phase_ = Phase::kWaitingForRequest;
    waiting_since_ = Clock::now();
    parser_.emplace();
    parser_->body_limit(kMaxBodyBytes);
    parser_->header_limit(kMaxHeaderBytes);
    stream_.expires_after(deadline_);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  // Still holds a connection slot.
  bool open() const { return !closed_; }
  // Holds a slot without being answered: idle between requests, still
  // sending one, or draining after a refusal. A new client may take its slot.
  bool idle() const { return !closed_ && phase_ != Phase::kAnswering; }
  Clock::time_point waiting_since() const { return waiting_since_; }
  // Closes the connection now: its pending read ends (aborted) and the
  // session goes away with it.
  void evict() {
    closed_ = true;
    stream_.close();
  }

 private:
  enum class Phase { kWaitingForRequest, kAnswering, kLingering };

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted || closed_) {
      return close();
    }
    if (ec) {
      // Malformed or too large: one fault, then the connection ends (the
      // rest of what was sent cannot be framed).
      std::string why = ec == http::error::body_limit ? fmt::format("request body over {} bytes", kMaxBodyBytes)
                                                      : "malformed HTTP request: " + ec.message();
      return respond(400, fault_body(why), /*keep_alive=*/false);
    }
    const auto& req = parser_->get();
    HttpResponse r = api_.handle(std::string_view(req.method_string().data(), req.method_string().size()),
                                 std::string_view(req.target().data(), req.target().size()), req.body());
    respond(r.status, std::move(r.body), req.keep_alive());
  }

  void respond(int status, std::string body, bool keep_alive) {
    phase_ = Phase::kAnswering;
    response_.emplace(static_cast<http::status>(status), 11);
    response_->set(http::field::server, "snapvm");
    if (!body.empty()) response_->set(http::field::content_type, "application/json");
    response_->body() = std::move(body);
    response_->keep_alive(keep_alive);
    response_->prepare_payload();
    stream_.expires_after(deadline_);
    http::async_write(stream_, *response_, [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
      if (ec || self->closed_) return self->close();
      if (!keep_alive) return self->linger();
      self->read();
    });
  }

  // A client may still be sending the body that was refused: closing now
  // would reset the connection under it before it reads the answer. Stop
  // sending, then read and drop what comes, for a bounded time and size.
  void linger() {
    phase_ = Phase::kLingering;
    waiting_since_ = Clock::now();
    beast::error_code ignored;
    stream_.socket().shutdown(Socket::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::seconds(1));  // once: a trickle cannot extend it
    drain();
  }
  void drain() {
    stream_.async_read_some(asio::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->drained_ += n;
      if (ec || self->closed_ || self->drained_ > kMaxDrainBytes) return self->close();
      self->drain();
    });
  }

  void close() {
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(Socket::socket::shutdown_both, ignored);
  }

  Stream stream_;
  Api& api_;
  SessionList& sessions_;
  SessionList::iterator self_in_list_;
  const std::chrono::milliseconds deadline_;
  Phase phase_ = Phase::kWaitingForRequest;
  Clock::time_point waiting_since_ = Clock::now();
  bool closed_ = false;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;
  std::array<char, 16 * 1024> scratch_;
  size_t drained_ = 0;
};

}  // namespace

struct HttpServer::Impl {
  // Declared first, destroyed last: sessions still pending in io remove
  // themselves from it as io is destroyed.
  SessionList sessions;
  asio::io_context io{1};
  Socket::acceptor acceptor{io};
  Api* api = nullptr;
  HttpLimits limits;

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, Socket::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) admit(std::move(socket));
      accept();
    });
  }

  // Idle connections must not lock out clients with something to ask: at
  // the limit the one idle longest makes way. Only when every connection
  // is being answered is the newcomer refused.
  void admit(Socket::socket socket) {
    auto open = std::count_if(sessions.begin(), sessions.end(), [](const Session* s) { return s->open(); });
    if (open >= limits.max_clients) {
      Session* longest_idle = nullptr;
      for (Session* s : sessions) {
        if (s->idle() && (!longest_idle || s->waiting_since() < longest_idle->waiting_since())) longest_idle = s;
      }
      if (!longest_idle) {
        beast::error_code ignored;
        socket.close(ignored);
        return;
      }
      longest_idle->evict();
    }
    std::make_shared<Session>(std::move(socket), *api, sessions, limits.request_deadline)->read();
  }
};

HttpServer::HttpServer(std::string path, std::unique_ptr<Impl> impl) : path_(std::move(path)), impl_(std::move(impl)) {}

Result<std::unique_ptr<HttpServer>> HttpServer::start(const std::string& socket_path, Api& api, HttpLimits limits) {
  // The same rules as every snapvm socket: 0600 before anyone can connect,
  // a stale file replaced, a live server's socket never taken over.
  auto listener = listen_unix(socket_path, SOMAXCONN, 0600, "--api-sock");
  if (!listener) return tl::unexpected(std::move(listener.error()));
  auto impl = std::make_unique<Impl>();
  impl->api = &api;
  impl->limits = limits;
  beast::error_code ec;
  impl->acceptor.assign(Socket(), listener->get(), ec);
  if (ec) {
    ::unlink(socket_path.c_str());
    return make_error(ErrorCode::kIo, "--api-sock {}: {}", socket_path, ec.message());
  }
  listener->release();  // the acceptor owns it now
  impl->accept();
  std::unique_ptr<HttpServer> out(new HttpServer(socket_path, std::move(impl)));
  Impl* i = out->impl_.get();
  out->thread_ = std::thread([i] {
    sandbox::enter_or_die(sandbox::ThreadKind::kApi);
    i->io.run();
  });
  return out;
}

HttpServer::~HttpServer() {
  impl_->io.stop();
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
}

}  // namespace snapvm::firecracker
