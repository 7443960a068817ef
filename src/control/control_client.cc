#include "control/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/json_fields.h"
#include "base/unique_fd.h"

namespace snapvm {

using nlohmann::json;

Result<json> control_request(const std::string& path, const json& req, std::chrono::milliseconds timeout,
                             const ControlPeer& peer) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_error("socket(AF_UNIX)");
  UniqueFd s(fd);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return make_error(ErrorCode::kInvalidArgument, "path {} is too long", path);
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (timeout.count() > 0) {
    // A Unix connect() blocks while the server's backlog is full (its
    // thread stuck); SO_SNDTIMEO bounds that, and the request's send.
    timeval limit{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return errno_error(fmt::format("connect to {} {} (is {} running?)", peer.socket, path, peer.server));
  }
  std::string line = req.dump() + "\n";
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    return errno_error(fmt::format("send to {} {}", peer.socket, path));
  }
  std::string reply;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (reply.find('\n') == std::string::npos) {
    if (reply.size() > (1 << 20)) return make_error(ErrorCode::kDataLoss, "{} {}: a reply over 1 MiB", peer.socket, path);
    if (timeout.count() > 0) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      pollfd p{fd, POLLIN, 0};
      int ready = left > 0 ? ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, INT32_MAX))) : 0;
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {
        return make_error(ErrorCode::kIo, "no reply on {} {} within {} ms", peer.socket, path, timeout.count());
      }
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return make_error(ErrorCode::kIo, "{} closed {} {} without replying", peer.server, peer.socket, path);
    }
    reply.append(buf, static_cast<size_t>(n));
  }
  reply.resize(reply.find('\n'));
  json j = json::parse(reply, nullptr, false);
  if (!j.is_object()) return make_error(ErrorCode::kDataLoss, "unreadable reply from {} {}", peer.socket, path);
  if (!json_field_or(j, "ok", false)) {
    return make_error(ErrorCode::kFailedPrecondition, "{}", json_field_or(j, "error", std::string("failed")));
  }
  return j;
}

}  // namespace snapvm
