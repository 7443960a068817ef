#include "devices/virtio/vsock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

#include "base/byte_codec.h"
#include "base/unix_socket.h"
#include "sandbox/seccomp.h"
#include "devices/virtio/vsock_packet.h"

namespace snapvm::virtio {
namespace {

using namespace vsock;

constexpr uint32_t kBufAlloc = 256 * 1024;     // what we advertise per connection
constexpr size_t kStashBytes = 64 * 1024;      // host data read ahead per connection
constexpr size_t kMaxConnectLine = 32;         // "CONNECT 4294967295\n" fits
constexpr size_t kMaxConnections = 4096;
constexpr uint64_t kTagKick = 1, kTagListener = 2, kTagForward = 3, kTagPending = 4, kTagConn = 5;

uint64_t tag(uint64_t kind, uint64_t value) { return kind << 56 | value; }
uint64_t conn_key(uint32_t local, uint32_t peer) { return uint64_t{local} << 32 | peer; }

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

}  // namespace

struct Vsock::Conn {
  UniqueFd fd;
  uint32_t local_port = 0;
  uint32_t peer_port = 0;
  bool established = false;
  bool reply_ok_line = false;  // a CONNECT client waits for "OK <port>\n"
  uint32_t peer_buf_alloc = 0;
  uint32_t peer_fwd_cnt = 0;
  uint32_t tx_cnt = 0;         // bytes sent to the guest
  uint32_t fwd_cnt = 0;        // guest bytes delivered to the host socket
  uint32_t fwd_cnt_sent = 0;   // fwd_cnt last told to the guest
  std::vector<uint8_t> to_host;
  std::vector<uint8_t> from_host;  // read ahead, waiting for rx buffers or credit
  bool readable = false;
  bool host_eof = false;
  bool shutdown_sent = false;
  bool guest_done_sending = false;
  bool dead = false;  // the host side failed: reset at the end of this round
  bool closing = false;  // the guest closed: reset once to_host is delivered
  uint32_t events = 0;

  uint32_t credit() const {
    uint32_t in_flight = tx_cnt - peer_fwd_cnt;
    return in_flight >= peer_buf_alloc ? 0 : peer_buf_alloc - in_flight;
  }
};

struct Vsock::Pending {
  UniqueFd fd;
  bool reply_ok = true;  // a Unix client (answered "OK <port>"), not a TCP forward
  std::string line;
  bool has_port = false;
  uint32_t port = 0;
};

// The worker's logic, with mu_ held.
class VsockWorker {
 public:
  explicit VsockWorker(Vsock& v) : v_(v) {}
  Mutex& mu() RETURN_CAPABILITY(v_.mu_) { return v_.mu_; }

  // Which used-buffer interrupts a round owes the guest.
  struct Signals {
    Transport* transport = nullptr;
    bool rx = false, tx = false, event = false;
  };

  // One round of the worker: host events, then the queues.
  Signals round(std::span<const epoll_event> events) REQUIRES(v_.mu_) {
    for (const auto& e : events) {
      uint64_t kind = e.data.u64 >> 56, value = e.data.u64 & ((1ull << 56) - 1);
      switch (kind) {
        case kTagKick: {
          uint64_t drain;
          (void)!::read(v_.kick_fd_.get(), &drain, sizeof drain);
          break;
        }
        case kTagListener: on_listener(); break;
        case kTagForward: on_forward(value); break;
        case kTagPending: on_pending(static_cast<int>(value)); break;
        case kTagConn: on_conn(static_cast<int>(value), e.events); break;
      }
    }
    Signals out;
    if (v_.transport_ != nullptr && !v_.paused_) {
      MutexLock queues(v_.transport_->queues_mutex());
      Virtqueue &rxq = v_.transport_->queue(0), &txq = v_.transport_->queue(1), &evq = v_.transport_->queue(2);
      out.event = advance_reset_event(evq);
      start_pending();
      // Replies drained into rx buffers make room for more tx packets.
      // A broken queue reports "signal" every time without progress, so
      // stop on errors, and bound the passes whatever the guest does.
      for (int pass = 0; pass < 64; ++pass) {
        bool was_throttled = tx_throttled();
        bool tx = process_tx(txq), rx = fill_rx(rxq);
        out.tx |= tx;
        out.rx |= rx;
        if (!rxq.error().empty() || !txq.error().empty()) break;
        if (!rx || !(tx || was_throttled) || tx_throttled()) break;
      }
      out.transport = v_.transport_;
    }
    update_interest();
    return out;
  }

  void on_listener() REQUIRES(v_.mu_) {
    for (;;) {
      int fd = ::accept4(v_.listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) return;
      if (v_.pending_.size() + v_.conns_.size() >= kMaxConnections) {
        ::close(fd);
        continue;
      }
      auto p = std::make_unique<Vsock::Pending>();
      p->fd.reset(fd);
      epoll_event ev{EPOLLIN, {.u64 = tag(kTagPending, static_cast<uint64_t>(fd))}};
      ::epoll_ctl(v_.epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
      v_.pending_[fd] = std::move(p);
    }
  }

  void on_forward(size_t index) REQUIRES(v_.mu_) {
    for (;;) {
      int fd = ::accept4(v_.forward_listeners_[index].second.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) return;
      if (v_.transport_ == nullptr || v_.pending_.size() + v_.conns_.size() >= kMaxConnections) {
        ::close(fd);  // no guest driver yet: refuse rather than hang
        continue;
      }
      uint32_t guest_port = v_.forward_listeners_[index].first.guest_port;
      if (v_.reset_event_ == Vsock::ResetEvent::kNone) {
        start_host_connection(UniqueFd(fd), guest_port, false);
        continue;
      }
      auto p = std::make_unique<Vsock::Pending>();  // until the guest has handled the reset
      p->fd.reset(fd);
      p->reply_ok = false;
      p->has_port = true;
      p->port = guest_port;
      v_.pending_[fd] = std::move(p);
    }
  }

  void on_pending(int fd) REQUIRES(v_.mu_) {
    auto it = v_.pending_.find(fd);
    if (it == v_.pending_.end()) return;
    Vsock::Pending& p = *it->second;
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
        ::epoll_ctl(v_.epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
        break;
      }
      if (p.line.size() > kMaxConnectLine) return drop_pending(fd);
    }
  }

  void start_pending() REQUIRES(v_.mu_) {
    if (v_.transport_ == nullptr || v_.reset_event_ != Vsock::ResetEvent::kNone) return;
    for (auto it = v_.pending_.begin(); it != v_.pending_.end();) {
      if (!it->second->has_port) {
        ++it;
        continue;
      }
      uint32_t port = it->second->port;
      bool reply_ok = it->second->reply_ok;
      UniqueFd fd = std::move(it->second->fd);
      it = v_.pending_.erase(it);
      start_host_connection(std::move(fd), port, reply_ok);
    }
  }

  void start_host_connection(UniqueFd fd, uint32_t guest_port, bool reply_ok) REQUIRES(v_.mu_) {
    uint32_t local = allocate_port(guest_port);
    auto c = std::make_unique<Vsock::Conn>();
    c->fd = std::move(fd);
    c->local_port = local;
    c->peer_port = guest_port;
    c->reply_ok_line = reply_ok;
    Vsock::Conn& conn = *c;
    v_.conns_[conn_key(local, guest_port)] = std::move(c);
    control(conn, kOpRequest);
  }

  uint32_t allocate_port(uint32_t peer) REQUIRES(v_.mu_) {
    for (;;) {
      uint32_t p = v_.next_local_port_++;
      if (v_.next_local_port_ == 0) v_.next_local_port_ = 1u << 30;
      if (v_.conns_.count(conn_key(p, peer)) == 0) return p;
    }
  }

  // Sends the transport-reset event once the guest has posted a buffer for
  // it, then watches for the guest to re-post one (it does after handling
  // the event). Returns whether the event queue needs an interrupt.
  bool advance_reset_event(Virtqueue& eq) REQUIRES(v_.mu_) {
    const GuestMemory& mem = v_.transport_->memory();
    switch (v_.reset_event_) {
      case Vsock::ResetEvent::kNone: return false;
      case Vsock::ResetEvent::kToSend: {
        auto chain = eq.pop(mem);
        if (!chain) {
          if (!eq.error().empty()) v_.reset_event_ = Vsock::ResetEvent::kNone;  // nothing to wait for
          return !eq.error().empty();
        }
        // The index before the event is used: once the buffer is in the
        // used ring a running driver may consume it and re-post at once,
        // and an index read after that would wait for a second re-post
        // that never comes (every host CONNECT would then hang).
        v_.reset_avail_idx_ = eq.driver_avail_idx(mem).value_or(0);
        uint8_t event[4] = {0, 0, 0, 0};  // struct virtio_vsock_event { le32 id; }, id 0: transport reset
        chain->write(0, event);
        eq.push_used(mem, *chain, 4);
        v_.reset_event_ = Vsock::ResetEvent::kAwaitingAck;
        return true;
      }
      case Vsock::ResetEvent::kAwaitingAck: {
        auto idx = eq.driver_avail_idx(mem);
        // A broken event queue will never acknowledge: stop waiting for it.
        if (!idx || *idx != v_.reset_avail_idx_) v_.reset_event_ = Vsock::ResetEvent::kNone;
        return false;
      }
    }
    return false;
  }

  void drop_pending(int fd) REQUIRES(v_.mu_) {
    ::epoll_ctl(v_.epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    v_.pending_.erase(fd);
  }

  void on_conn(int fd, uint32_t events) REQUIRES(v_.mu_) {
    for (auto& [key, c] : v_.conns_) {
      if (c->fd.get() != fd) continue;
      if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) c->readable = true;
      if (events & EPOLLOUT) flush_to_host(*c);
      return;
    }
  }

  // Queues a header-only packet from the host side of `c` to the guest.
  void control(Vsock::Conn& c, uint16_t op, uint32_t flags = 0) REQUIRES(v_.mu_) {
    control_to(c.local_port, c.peer_port, op, flags, &c);
  }
  void control_to(uint32_t local, uint32_t peer, uint16_t op, uint32_t flags, Vsock::Conn* c) REQUIRES(v_.mu_) {
    Header h;
    h.src_cid = kHostCid;
    h.dst_cid = v_.guest_cid_;
    h.src_port = local;
    h.dst_port = peer;
    h.op = op;
    h.flags = flags;
    h.buf_alloc = kBufAlloc;
    if (c != nullptr) {
      h.fwd_cnt = c->fwd_cnt;
      c->fwd_cnt_sent = c->fwd_cnt;
    }
    uint8_t raw[kHeaderBytes];
    h.encode(raw);
    v_.control_.insert(v_.control_.end(), raw, raw + kHeaderBytes);
  }

  void remove(uint64_t key) REQUIRES(v_.mu_) {
    auto it = v_.conns_.find(key);
    if (it == v_.conns_.end()) return;
    if (it->second->events != 0) ::epoll_ctl(v_.epoll_.get(), EPOLL_CTL_DEL, it->second->fd.get(), nullptr);
    v_.conns_.erase(it);
  }

  void reset_conn(uint64_t key) REQUIRES(v_.mu_) {
    auto it = v_.conns_.find(key);
    if (it == v_.conns_.end()) return;
    control(*it->second, kOpRst);
    remove(key);
  }

  void flush_to_host(Vsock::Conn& c) REQUIRES(v_.mu_) {
    while (!c.to_host.empty()) {
      ssize_t n = ::send(c.fd.get(), c.to_host.data(), c.to_host.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        c.dead = true;  // the host side went away
        c.to_host.clear();
        break;
      }
      c.to_host.erase(c.to_host.begin(), c.to_host.begin() + n);
      c.fwd_cnt += static_cast<uint32_t>(n);
    }
    if (c.fwd_cnt - c.fwd_cnt_sent >= kBufAlloc / 4) control(c, kOpCreditUpdate);
    if (c.to_host.empty() && c.guest_done_sending) ::shutdown(c.fd.get(), SHUT_WR);
  }

  // Guest -> host: the packets on the tx queue, while the replies they may
  // provoke (RST, RESPONSE, credit updates) have room. A guest that sends
  // without posting rx buffers fills that room and then its own tx queue:
  // back-pressure instead of host memory.
  bool tx_throttled() const REQUIRES(v_.mu_) { return v_.control_.size() >= Vsock::kMaxQueuedControlPackets * kHeaderBytes; }
  bool process_tx(Virtqueue& q) REQUIRES(v_.mu_) {
    const GuestMemory& mem = v_.transport_->memory();
    bool any = false;
    while (!tx_throttled()) {
      auto chain = q.pop(mem);
      if (!chain) break;
      any = true;
      uint8_t raw[kHeaderBytes];
      if (chain->read(0, raw) == kHeaderBytes) handle_packet(Header::decode(raw), *chain);
      q.push_used(mem, *chain, 0);
    }
    return any || !q.error().empty();
  }

  void handle_packet(const Header& h, const Chain& chain) REQUIRES(v_.mu_) {
    uint64_t payload = chain.readable_bytes() - kHeaderBytes;
    if (h.src_cid != v_.guest_cid_ || h.dst_cid != kHostCid || h.type != kTypeStream || h.len > payload ||
        h.len > kBufAlloc) {
      if (h.op != kOpRst) control_to(h.dst_port, h.src_port, kOpRst, 0, nullptr);
      return;
    }
    uint64_t key = conn_key(h.dst_port, h.src_port);
    auto it = v_.conns_.find(key);
    Vsock::Conn* c = it == v_.conns_.end() ? nullptr : it->second.get();
    if (c != nullptr) {
      c->peer_buf_alloc = h.buf_alloc;
      c->peer_fwd_cnt = h.fwd_cnt;
    }
    switch (h.op) {
      case kOpRequest: {
        if (c != nullptr || v_.conns_.size() >= kMaxConnections) {
          control_to(h.dst_port, h.src_port, kOpRst, 0, nullptr);
          return;
        }
        auto fd = connect_host_listener(h.dst_port);
        if (!fd.valid()) {
          control_to(h.dst_port, h.src_port, kOpRst, 0, nullptr);
          return;
        }
        auto nc = std::make_unique<Vsock::Conn>();
        nc->fd = std::move(fd);
        nc->local_port = h.dst_port;
        nc->peer_port = h.src_port;
        nc->established = true;
        nc->peer_buf_alloc = h.buf_alloc;
        nc->peer_fwd_cnt = h.fwd_cnt;
        Vsock::Conn& ref = *nc;
        v_.conns_[key] = std::move(nc);
        control(ref, kOpResponse);
        return;
      }
      case kOpResponse:
        if (c == nullptr || c->established) {
          control_to(h.dst_port, h.src_port, kOpRst, 0, nullptr);
          if (c != nullptr) remove(key);
          return;
        }
        c->established = true;
        if (c->reply_ok_line) {
          std::string ok = "OK " + std::to_string(c->local_port) + "\n";
          if (::send(c->fd.get(), ok.data(), ok.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(ok.size())) {
            reset_conn(key);
          }
        }
        return;
      case kOpRw:
        if (c == nullptr || !c->established) {
          control_to(h.dst_port, h.src_port, kOpRst, 0, nullptr);
          return;
        }
        if (c->to_host.size() + h.len > kBufAlloc) {  // the guest ignored our credit
          reset_conn(key);
          return;
        }
        {
          size_t at = c->to_host.size();
          c->to_host.resize(at + h.len);
          chain.read(kHeaderBytes, {c->to_host.data() + at, h.len});
        }
        flush_to_host(*c);
        return;
      case kOpShutdown:
        if (c == nullptr) return;
        if ((h.flags & (kShutdownRcv | kShutdownSend)) == (kShutdownRcv | kShutdownSend)) {
          // The guest closed: deliver what it sent, then acknowledge with RST.
          c->guest_done_sending = true;
          c->closing = true;
          c->from_host.clear();
          flush_to_host(*c);
          return;
        }
        if (h.flags & kShutdownSend) {
          c->guest_done_sending = true;
          flush_to_host(*c);
        }
        return;
      case kOpRst:
        if (c != nullptr) remove(key);
        return;
      case kOpCreditUpdate:
        return;
      case kOpCreditRequest:
        if (c != nullptr) control(*c, kOpCreditUpdate);
        return;
      default:
        control_to(h.dst_port, h.src_port, kOpRst, 0, nullptr);
        if (c != nullptr) remove(key);
    }
  }

  UniqueFd connect_host_listener(uint32_t port) REQUIRES(v_.mu_) {
    sockaddr_un addr;
    if (!fill_sockaddr(v_.uds_path_ + "_" + std::to_string(port), addr)) return {};
    auto fd = unix_socket();
    if (!fd) return {};
    if (::connect(fd->get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return {};
    return std::move(*fd);
  }

  // Host -> guest: control packets first, then data, while rx buffers last.
  bool fill_rx(Virtqueue& q) REQUIRES(v_.mu_) {
    const GuestMemory& mem = v_.transport_->memory();
    bool any = false;
    v_.rx_starved_ = false;
    size_t ctl = 0;
    for (;;) {
      if (ctl < v_.control_.size()) {
        auto chain = q.pop(mem);
        if (!chain) break;
        chain->write(0, {v_.control_.data() + ctl, kHeaderBytes});
        q.push_used(mem, *chain, kHeaderBytes);
        ctl += kHeaderBytes;
        any = true;
        continue;
      }
      Vsock::Conn* c = next_sender();
      if (c == nullptr) break;
      auto chain = q.pop(mem);
      if (!chain) break;
      uint64_t room = chain->writable_bytes() > kHeaderBytes ? chain->writable_bytes() - kHeaderBytes : 0;
      uint32_t n = static_cast<uint32_t>(std::min<uint64_t>({room, c->credit(), c->from_host.size()}));
      Header h;
      h.src_cid = kHostCid;
      h.dst_cid = v_.guest_cid_;
      h.src_port = c->local_port;
      h.dst_port = c->peer_port;
      h.buf_alloc = kBufAlloc;
      h.fwd_cnt = c->fwd_cnt;
      c->fwd_cnt_sent = c->fwd_cnt;
      if (n > 0) {
        h.op = kOpRw;
        h.len = n;
        chain->write(kHeaderBytes, {c->from_host.data(), n});
        c->from_host.erase(c->from_host.begin(), c->from_host.begin() + n);
        c->tx_cnt += n;
      } else {
        // Only reached for a drained connection whose host side stopped
        // sending; it may still read (a half-close), so only SEND ends.
        h.op = kOpShutdown;
        h.flags = kShutdownSend;
        c->shutdown_sent = true;
      }
      uint8_t raw[kHeaderBytes];
      h.encode(raw);
      chain->write(0, raw);
      q.push_used(mem, *chain, kHeaderBytes + n);
      any = true;
    }
    v_.control_.erase(v_.control_.begin(), v_.control_.begin() + static_cast<long>(ctl));
    v_.rx_starved_ = !v_.control_.empty() || next_sender() != nullptr;
    return any || !q.error().empty();
  }

  // A connection with something for the guest: data within credit, or a
  // shutdown once its host side ended and everything read was delivered.
  Vsock::Conn* next_sender() REQUIRES(v_.mu_) {
    for (auto& [key, c] : v_.conns_) {
      if (!c->established || c->closing) continue;
      if (c->readable && !c->host_eof && c->from_host.size() < kStashBytes) read_ahead(*c);
      if (!c->from_host.empty() && c->credit() > 0) return c.get();
      if (c->from_host.empty() && c->host_eof && !c->shutdown_sent) return c.get();
    }
    return nullptr;
  }

  void read_ahead(Vsock::Conn& c) REQUIRES(v_.mu_) {
    size_t at = c.from_host.size();
    c.from_host.resize(kStashBytes);
    ssize_t n = ::recv(c.fd.get(), c.from_host.data() + at, kStashBytes - at, 0);
    if (n > 0) {
      c.from_host.resize(at + static_cast<size_t>(n));
      return;
    }
    c.from_host.resize(at);
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) c.host_eof = true;
    c.readable = false;
  }

  void update_interest() REQUIRES(v_.mu_) {
    std::vector<uint64_t> dead;
    for (auto& [key, c] : v_.conns_) {
      if (c->dead || (c->closing && c->to_host.empty())) dead.push_back(key);
    }
    for (uint64_t key : dead) reset_conn(key);
    for (auto& [key, c] : v_.conns_) {
      uint32_t want = 0;
      if (c->established && !c->closing && !c->host_eof && !c->readable && c->from_host.size() < kStashBytes) {
        want |= EPOLLIN;
      }
      if (!c->to_host.empty()) want |= EPOLLOUT;
      if (want == c->events) continue;
      epoll_event ev{want, {.u64 = tag(kTagConn, static_cast<uint64_t>(c->fd.get()))}};
      int op = c->events == 0 ? EPOLL_CTL_ADD : (want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD);
      ::epoll_ctl(v_.epoll_.get(), op, c->fd.get(), &ev);
      c->events = want;
    }
  }

 private:
  Vsock& v_;
};

Result<std::unique_ptr<Vsock>> Vsock::create(uint64_t guest_cid, const std::string& uds_path,
                                             std::vector<state::PortForward> forwards) {
  if (guest_cid < 3 || guest_cid > 0xffffffffu) {
    return make_error(ErrorCode::kInvalidArgument, "vsock guest CID {} is not in 3..2^32-1", guest_cid);
  }
  std::unique_ptr<Vsock> v(new Vsock(guest_cid, uds_path));
  // The VM's owner only: whoever connects can talk to every guest port.
  v->listener_ = SNAPVM_TRY(listen_unix(uds_path, 128, 0600, "vsock socket"));
  for (auto& f : forwards) {
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
    v->forward_listeners_.emplace_back(f, std::move(owned));
  }
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return errno_error("epoll_create1");
  v->epoll_.reset(ep);
  int kick = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (kick < 0) return errno_error("eventfd");
  v->kick_fd_.reset(kick);
  epoll_event ev{EPOLLIN, {.u64 = tag(kTagKick, 0)}};
  ::epoll_ctl(ep, EPOLL_CTL_ADD, kick, &ev);
  ev = {EPOLLIN, {.u64 = tag(kTagListener, 0)}};
  ::epoll_ctl(ep, EPOLL_CTL_ADD, v->listener_.get(), &ev);
  for (size_t i = 0; i < v->forward_listeners_.size(); ++i) {
    ev = {EPOLLIN, {.u64 = tag(kTagForward, i)}};
    ::epoll_ctl(ep, EPOLL_CTL_ADD, v->forward_listeners_[i].second.get(), &ev);
  }
  Vsock* raw = v.get();
  v->worker_ = std::thread([raw] { raw->run(); });
  return v;
}

Vsock::Vsock(uint64_t guest_cid, std::string uds_path) : guest_cid_(guest_cid), uds_path_(std::move(uds_path)) {
  // Host ports start somewhere new in every process: a VM restored from a
  // snapshot may still hold connections to ports its first life used.
  uint32_t r = 0;
  (void)!::getrandom(&r, sizeof r, 0);
  next_local_port_ = (1u << 30) + (r % (1u << 29));
}

Vsock::~Vsock() {
  stop_ = true;
  kick();
  if (worker_.joinable()) worker_.join();
  if (listener_.valid()) ::unlink(uds_path_.c_str());
}

std::vector<state::PortForward> Vsock::forwards() const {
  std::vector<state::PortForward> out;
  for (const auto& [f, fd] : forward_listeners_) out.push_back(f);
  return out;
}

std::vector<uint8_t> Vsock::save_specific() const {
  MutexLock lock(mu_);
  ByteWriter w;
  w.u64(guest_cid_);
  w.u32(static_cast<uint32_t>(conns_.size()));
  for (const auto& [key, c] : conns_) {
    w.u32(c->local_port);
    w.u32(c->peer_port);
    w.u8(c->established ? 1 : 0);
    w.u32(c->peer_buf_alloc);
    w.u32(c->peer_fwd_cnt);
    w.u32(c->tx_cnt);
    w.u32(c->fwd_cnt);
  }
  return w.take();
}

std::string Vsock::describe() const {
  MutexLock lock(mu_);
  std::string reset = reset_event_ == ResetEvent::kNone   ? std::string("no transport reset outstanding")
                      : reset_event_ == ResetEvent::kToSend ? std::string("transport reset waiting for an event buffer")
                                                            : fmt::format("transport reset sent, waiting for the driver "
                                                                          "to re-post its buffer (event queue avail "
                                                                          "index {} when sent)",
                                                                          reset_avail_idx_);
  size_t waiting = 0;
  for (const auto& [fd, p] : pending_) waiting += p->has_port ? 1 : 0;
  return fmt::format("vsock: {}, {} connections, {} host connections waiting for the guest, {} control packets "
                     "queued{}{}",
                     reset, conns_.size(), waiting, control_.size() / kHeaderBytes,
                     rx_starved_ ? ", out of rx buffers" : "", paused_ ? ", paused" : "");
}

size_t Vsock::connection_count() const {
  MutexLock lock(mu_);
  return conns_.size();
}

void Vsock::read_config(uint64_t offset, std::span<uint8_t> data) const {
  uint8_t config[8];
  std::memcpy(config, &guest_cid_, 8);
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < 8 ? config[offset + i] : 0;
}

void Vsock::activate(Transport& transport, uint64_t) {
  {
    MutexLock lock(mu_);
    transport_ = &transport;
  }
  kick();
}

void Vsock::queue_notify(size_t) { kick(); }

// Runs on the vCPU thread that wrote the driver's reset (a guest powering
// off resets its devices), whose seccomp filter has no epoll_ctl: closing
// the connections' sockets takes them out of the worker's epoll set.
void Vsock::reset() {
  MutexLock lock(mu_);
  transport_ = nullptr;
  conns_.clear();
  control_.clear();
  reset_event_ = ResetEvent::kNone;  // the driver starts over with no sockets
}

// Before activate(): no host connection may start between the queues going
// live and the reset being owed (see reset_event_).
void Vsock::restored() {
  {
    MutexLock lock(mu_);
    reset_event_ = ResetEvent::kToSend;
  }
  kick();
}

void Vsock::set_paused(bool paused) {
  {
    MutexLock lock(mu_);
    paused_ = paused;
  }
  // A round that began before the flag was set may still be touching the
  // queues or about to raise an interrupt: wait for it to end, so a
  // snapshot captures the transport and the interrupt controller on the
  // same side of that interrupt.
  if (paused) {
    MutexLock wait_for_round(round_mu_);
  }
  kick();
}

void Vsock::kick() {
  uint64_t one = 1;
  (void)!::write(kick_fd_.get(), &one, sizeof one);
}

void Vsock::run() {
  sandbox::enter_or_die(sandbox::ThreadKind::kDevice);
  VsockWorker w(*this);
  epoll_event events[64];
  while (!stop_.load()) {
    int n = ::epoll_wait(epoll_.get(), events, 64, 1000);
    MutexLock round(round_mu_);
    VsockWorker::Signals to_raise;
    {
      MutexLock lock(w.mu());
      to_raise = w.round({events, static_cast<size_t>(std::max(n, 0))});
    }
    // Outside the lock: the transport takes its own lock to raise the irq.
    if (Transport* t = to_raise.transport) {
      if (to_raise.tx) t->signal_used(1);
      if (to_raise.rx) t->signal_used(0);
      if (to_raise.event) t->signal_used(2);
    }
  }
}

}  // namespace snapvm::virtio
