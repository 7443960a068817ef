#include "tools/bench/qmp_client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

namespace snapvm::bench {

Result<QmpClient> QmpClient::connect(const std::string& path, std::chrono::milliseconds limit) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return make_error(ErrorCode::kInvalidArgument, "QMP path too long");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return make_error(ErrorCode::kIo, "socket: {}", std::strerror(errno));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      QmpClient c(fd);
      SNAPVM_TRY(c.read_message());  // the greeting
      SNAPVM_TRY(c.execute("qmp_capabilities"));
      return c;
    }
    ::close(fd);
    if (std::chrono::steady_clock::now() > deadline) {
      return make_error(ErrorCode::kIo, "QMP socket {} did not accept a connection", path);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

QmpClient::QmpClient(QmpClient&& o) noexcept : fd_(o.fd_), buffer_(std::move(o.buffer_)) { o.fd_ = -1; }
QmpClient& QmpClient::operator=(QmpClient&& o) noexcept {
  std::swap(fd_, o.fd_);
  std::swap(buffer_, o.buffer_);
  return *this;
}
QmpClient::~QmpClient() {
  if (fd_ >= 0) ::close(fd_);
}

Result<nlohmann::json> QmpClient::read_message() {
  for (;;) {
    auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) return make_error(ErrorCode::kDataLoss, "QMP sent a line that is not JSON: {}", line);
      return j;
    }
    if (buffer_.size() > (1u << 20)) return make_error(ErrorCode::kDataLoss, "QMP line over 1 MiB");
    char chunk[4096];
    ssize_t n = ::read(fd_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error(ErrorCode::kIo, "QMP connection closed");
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

Result<nlohmann::json> QmpClient::execute(const std::string& command, const nlohmann::json& arguments) {
  nlohmann::json request = {{"execute", command}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  std::string out = request.dump() + "\n";
  if (::send(fd_, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) {
    return make_error(ErrorCode::kIo, "QMP send failed");
  }
  for (;;) {
    auto reply = SNAPVM_TRY(read_message());
    if (reply.contains("event")) continue;
    if (reply.contains("error")) {
      return make_error(ErrorCode::kFailedPrecondition, "QMP {}: {}", command, reply["error"].value("desc", "error"));
    }
    if (reply.contains("return")) return reply["return"];
  }
}

}  // namespace snapvm::bench
