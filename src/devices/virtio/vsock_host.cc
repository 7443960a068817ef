#include "devices/virtio/vsock_host.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>

#include <fmt/format.h>

#include "base/unix_socket.h"
#include "devices/virtio/vsock_connection.h"

namespace snapvm::virtio::vsock {
namespace {

uint64_t token(uint64_t kind, uint64_t value) { return kind << 56 | value; }

Result<UniqueFd> unix_socket() {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return errno_error("socket(AF_UNIX)");
  return UniqueFd(fd);
}

bool fill_sockaddr(const std::string& path, sockaddr_un& addr) {
  addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return false;
  std::memcpy(addr.sun_path, path.data(), path.size());
  return true;
}

// A TCP listener for `f`, whose port, address, family, type and CID it fills in.
Result<UniqueFd> listen_forward(state::PortForward& f, uint64_t guest_cid) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return errno_error("socket(AF_INET)");
  UniqueFd owned(fd);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(static_cast<uint16_t>(f.host_port));
  std::string host = f.host_address.empty() ? "127.0.0.1" : f.host_address;
  if (::inet_pton(AF_INET, host.c_str(), &in.sin_addr) != 1) {
    return make_error(ErrorCode::kInvalidArgument, "--publish: '{}' is not an IPv4 address", host);
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&in), sizeof in) != 0 || ::listen(fd, 128) != 0) {
    return errno_error(fmt::format("--publish {}:{}", host, f.host_port));
  }
  socklen_t len = sizeof in;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&in), &len);
  f.host_port = ntohs(in.sin_port);
  f.host_address = host;
  f.family = AF_INET;
  f.socket_type = SOCK_STREAM;
  f.guest_cid = static_cast<uint32_t>(guest_cid);
  return owned;
}

}  // namespace

Result<std::unique_ptr<HostSide>> HostSide::create(const std::string& uds_path, uint64_t guest_cid,
                                                   std::vector<state::PortForward>& forwards, DeviceWorker& worker) {
  auto listener = SNAPVM_TRY(listen_unix(uds_path, 128, 0600, "vsock socket"));
  // From here on the destructor removes the socket file, whatever fails next.
  std::unique_ptr<HostSide> h(new HostSide(uds_path, std::move(listener), worker));
  for (auto& f : forwards) {
    auto fd = SNAPVM_TRY(listen_forward(f, guest_cid));
    h->forward_listeners_.emplace_back(f.guest_port, std::move(fd));
  }
  (void)worker.add(h->listener_.get(), EPOLLIN, token(kTokenListener, 0));
  for (size_t i = 0; i < h->forward_listeners_.size(); ++i) {
    (void)worker.add(h->forward_listeners_[i].second.get(), EPOLLIN, token(kTokenForward, i));
  }
  return h;
}

HostSide::~HostSide() {
  if (listener_.valid()) ::unlink(uds_path_.c_str());
}

std::vector<HostStream> HostSide::on_ready(uint64_t t, size_t connections, Admission admission) {
  std::vector<HostStream> out;
  const uint64_t value = t & ((1ull << 56) - 1);
  switch (t >> 56) {
    case kTokenListener: accept_unix(connections); break;
    case kTokenForward: accept_forward(value, connections, admission, out); break;
    case kTokenPending: read_connect_line(static_cast<int>(value)); break;
  }
  return out;
}

void HostSide::accept_unix(size_t connections) {
  for (;;) {
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    if (pending_.size() + connections >= kMaxConnections) {
      ::close(fd);
      continue;
    }
    auto p = std::make_unique<Pending>();
    p->fd.reset(fd);
    (void)worker_.add(fd, EPOLLIN, token(kTokenPending, static_cast<uint64_t>(fd)));
    pending_[fd] = std::move(p);
  }
}

void HostSide::accept_forward(size_t index, size_t connections, Admission admission, std::vector<HostStream>& out) {
  for (;;) {
    int fd = ::accept4(forward_listeners_[index].second.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    // Streams started in this call count as connections already.
    if (admission == Admission::kRefuse || pending_.size() + connections + out.size() >= kMaxConnections) {
      ::close(fd);  // no guest driver yet: refuse rather than hang
      continue;
    }
    uint32_t guest_port = forward_listeners_[index].first;
    if (admission == Admission::kNow) {
      out.push_back({UniqueFd(fd), guest_port, false});
      continue;
    }
    auto p = std::make_unique<Pending>();  // until the guest has handled the reset
    p->fd.reset(fd);
    p->reply_ok = false;
    p->has_port = true;
    p->port = guest_port;
    pending_[fd] = std::move(p);
  }
}

void HostSide::read_connect_line(int fd) {
  auto it = pending_.find(fd);
  if (it == pending_.end()) return;
  Pending& p = *it->second;
  char buf[64];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return drop_pending(fd);
    if (n < 0) break;
    p.line.append(buf, static_cast<size_t>(n));
    auto nl = p.line.find('\n');
    if (nl != std::string::npos) {
      std::string_view cmd(p.line.data(), nl);
      uint32_t port = 0;
      if (cmd.substr(0, 8) != "CONNECT " ||
          std::from_chars(cmd.data() + 8, cmd.data() + cmd.size(), port).ec != std::errc()) {
        return drop_pending(fd);
      }
      if (nl + 1 != p.line.size()) return drop_pending(fd);  // no data before OK
      p.has_port = true;
      p.port = port;
      worker_.remove(fd);
      break;
    }
    if (p.line.size() > kMaxConnectLine) return drop_pending(fd);
  }
}

void HostSide::drop_pending(int fd) {
  worker_.remove(fd);
  pending_.erase(fd);
}

std::vector<HostStream> HostSide::take_waiting() {
  std::vector<HostStream> out;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (!it->second->has_port) {
      ++it;
      continue;
    }
    out.push_back({std::move(it->second->fd), it->second->port, it->second->reply_ok});
    it = pending_.erase(it);
  }
  return out;
}

size_t HostSide::waiting() const {
  size_t n = 0;
  for (const auto& [fd, p] : pending_) n += p->has_port ? 1 : 0;
  return n;
}

UniqueFd HostSide::connect(uint32_t port) const {
  sockaddr_un addr;
  if (!fill_sockaddr(uds_path_ + "_" + std::to_string(port), addr)) return {};
  auto fd = unix_socket();
  if (!fd) return {};
  if (::connect(fd->get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return {};
  return std::move(*fd);
}

}  // namespace snapvm::virtio::vsock
