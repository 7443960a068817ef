#include "firecracker/http_server.h"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "sandbox/seccomp.h"

namespace snapvm::firecracker {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Socket = asio::local::stream_protocol;
using Stream = beast::basic_stream<Socket>;

// A client that sends a request slower than this is cut off, so a stuck
// client holds nothing for long.
constexpr auto kIoTimeout = std::chrono::seconds(5);
constexpr uint32_t kMaxHeaderBytes = 8 * 1024;
constexpr size_t kMaxDrainBytes = 1 << 20;


// One client connection: requests read and answered in turn (HTTP/1.1
// keep-alive), every read and write under kIoTimeout.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Socket::socket socket, Api& api, std::atomic<int>& sessions)
      : stream_(std::move(socket)), api_(api), sessions_(sessions) {
    ++sessions_;
  }
  ~Session() { --sessions_; }

  void read() {
    parser_.emplace();
    parser_->body_limit(kMaxBodyBytes);
    parser_->header_limit(kMaxHeaderBytes);
    stream_.expires_after(kIoTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

 private:
  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
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
    response_.emplace(static_cast<http::status>(status), 11);
    response_->set(http::field::server, "snapvm");
    if (!body.empty()) response_->set(http::field::content_type, "application/json");
    response_->body() = std::move(body);
    response_->keep_alive(keep_alive);
    response_->prepare_payload();
    stream_.expires_after(kIoTimeout);
    http::async_write(stream_, *response_, [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
      if (ec) return self->close();
      if (!keep_alive) return self->linger();
      self->read();
    });
  }

  // A client may still be sending the body that was refused: closing now
  // would reset the connection under it before it reads the answer. Stop
  // sending, then read and drop what comes, for a bounded time and size.
  void linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(Socket::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::seconds(1));  // once: a trickle cannot extend it
    drain();
  }
  void drain() {
    stream_.async_read_some(asio::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > kMaxDrainBytes) return self->close();
      self->drain();
    });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(Socket::socket::shutdown_both, ignored);
  }

  Stream stream_;
  Api& api_;
  std::atomic<int>& sessions_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;
  std::array<char, 16 * 1024> scratch_;
  size_t drained_ = 0;
};

}  // namespace

struct HttpServer::Impl {
  asio::io_context io{1};
  Socket::acceptor acceptor{io};
  Api* api = nullptr;
  std::atomic<int> sessions{0};

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, Socket::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        if (sessions.load() >= HttpServer::kMaxClients) {
          beast::error_code ignored;
          socket.close(ignored);  // over the limit: refused, the others go on
        } else {
          std::make_shared<Session>(std::move(socket), *api, sessions)->read();
        }
      }
      accept();
    });
  }
};

HttpServer::HttpServer(std::string path, std::unique_ptr<Impl> impl) : path_(std::move(path)), impl_(std::move(impl)) {}

Result<std::unique_ptr<HttpServer>> HttpServer::start(const std::string& socket_path, Api& api) {
  if (socket_path.empty() || socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return make_error(ErrorCode::kInvalidArgument, "--api-sock: a socket path of 1 to {} bytes",
                      sizeof(sockaddr_un{}.sun_path) - 1);
  }
  struct stat st {};
  if (::lstat(socket_path.c_str(), &st) == 0) {
    return make_error(ErrorCode::kFailedPrecondition, "--api-sock {}: already exists (remove it first)", socket_path);
  }
  auto impl = std::make_unique<Impl>();
  impl->api = &api;
  // Bound and listening under a temporary name, then renamed: a client that
  // sees the socket file can connect at once, and nobody else's file is
  // ever taken over.
  const std::string temp = socket_path + ".binding";
  ::unlink(temp.c_str());
  beast::error_code ec;
  impl->acceptor.open(Socket(), ec);
  if (!ec) impl->acceptor.bind(Socket::endpoint(temp), ec);
  if (ec) return make_error(ErrorCode::kIo, "--api-sock {}: cannot bind: {}", socket_path, ec.message());
  impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  // Only the owner drives the VM: the socket file's mode is what grants it.
  if (ec || ::chmod(temp.c_str(), 0600) != 0 || ::rename(temp.c_str(), socket_path.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    if (ec) return make_error(ErrorCode::kIo, "--api-sock {}: cannot listen: {}", socket_path, ec.message());
    return errno_error("--api-sock " + socket_path, err);
  }
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
