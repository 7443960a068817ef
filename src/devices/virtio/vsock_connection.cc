#include "devices/virtio/vsock_connection.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace snapvm::virtio::vsock {

Header host_header(uint64_t guest_cid, uint32_t local, uint32_t peer, uint16_t op) {
  Header h;
  h.src_cid = kHostCid;
  h.dst_cid = guest_cid;
  h.src_port = local;
  h.dst_port = peer;
  h.op = op;
  h.buf_alloc = kBufAlloc;
  return h;
}

void ControlQueue::push(uint32_t local, uint32_t peer, uint16_t op, uint32_t flags, uint32_t fwd_cnt) {
  Header h = host_header(guest_cid_, local, peer, op);
  h.flags = flags;
  h.fwd_cnt = fwd_cnt;
  uint8_t raw[kHeaderBytes];
  h.encode(raw);
  bytes_.insert(bytes_.end(), raw, raw + kHeaderBytes);
}

std::unique_ptr<Connection> Connection::from_guest(UniqueFd fd, const Header& request) {
  std::unique_ptr<Connection> c(new Connection(std::move(fd), request.dst_port, request.src_port));
  c->established_ = true;
  c->update_peer_credit(request);
  return c;
}

std::unique_ptr<Connection> Connection::from_host(UniqueFd fd, uint32_t local, uint32_t guest_port, bool reply_ok) {
  std::unique_ptr<Connection> c(new Connection(std::move(fd), local, guest_port));
  c->reply_ok_line_ = reply_ok;
  return c;
}

void Connection::control(ControlQueue& q, uint16_t op, uint32_t flags) {
  q.push(local_port_, peer_port_, op, flags, fwd_cnt_);
  fwd_cnt_sent_ = fwd_cnt_;
}

bool Connection::on_response() {
  established_ = true;
  if (reply_ok_line_) {
    std::string ok = "OK " + std::to_string(local_port_) + "\n";
    if (::send(fd_.get(), ok.data(), ok.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(ok.size())) return false;
  }
  return true;
}

void Connection::on_guest_shutdown(uint32_t flags, ControlQueue& q) {
  if ((flags & (kShutdownRcv | kShutdownSend)) == (kShutdownRcv | kShutdownSend)) {
    // The guest closed: deliver what it sent, then acknowledge with RST.
    guest_done_sending_ = true;
    closing_ = true;
    from_host_.clear();
    flush_to_host(q);
    return;
  }
  if (flags & kShutdownSend) {
    guest_done_sending_ = true;
    flush_to_host(q);
  }
}

bool Connection::take_from_guest(const Chain& chain, uint64_t offset, uint32_t len) {
  if (to_host_.size() + len > kBufAlloc) return false;
  size_t at = to_host_.size();
  to_host_.resize(at + len);
  chain.read(offset, {to_host_.data() + at, len});
  return true;
}

void Connection::flush_to_host(ControlQueue& q) {
  while (!to_host_.empty()) {
    ssize_t n = ::send(fd_.get(), to_host_.data(), to_host_.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      dead_ = true;  // the host side went away
      to_host_.clear();
      break;
    }
    to_host_.erase(to_host_.begin(), to_host_.begin() + n);
    fwd_cnt_ += static_cast<uint32_t>(n);
  }
  if (fwd_cnt_ - fwd_cnt_sent_ >= kBufAlloc / 4) control(q, kOpCreditUpdate);
  if (to_host_.empty() && guest_done_sending_) ::shutdown(fd_.get(), SHUT_WR);
}

void Connection::on_host_events(uint32_t events, ControlQueue& q) {
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) readable_ = true;
  if (events & EPOLLOUT) flush_to_host(q);
}

bool Connection::has_packet_for_guest() {
  if (!established_ || closing_) return false;
  if (readable_ && !host_eof_ && from_host_.size() < kStashBytes) read_ahead();
  if (!from_host_.empty() && credit() > 0) return true;
  return from_host_.empty() && host_eof_ && !shutdown_sent_;
}

void Connection::read_ahead() {
  size_t at = from_host_.size();
  from_host_.resize(kStashBytes);
  ssize_t n = ::recv(fd_.get(), from_host_.data() + at, kStashBytes - at, 0);
  if (n > 0) {
    from_host_.resize(at + static_cast<size_t>(n));
    return;
  }
  from_host_.resize(at);
  if (n == 0 || (errno != EAGAIN && errno != EINTR)) host_eof_ = true;
  readable_ = false;
}

uint32_t Connection::write_packet_for_guest(const Chain& chain, uint64_t guest_cid) {
  uint64_t room = chain.writable_bytes() > kHeaderBytes ? chain.writable_bytes() - kHeaderBytes : 0;
  uint32_t n = static_cast<uint32_t>(std::min<uint64_t>({room, credit(), from_host_.size()}));
  Header h = host_header(guest_cid, local_port_, peer_port_, kOpRw);
  h.fwd_cnt = fwd_cnt_;
  fwd_cnt_sent_ = fwd_cnt_;
  if (n > 0) {
    h.len = n;
    chain.write(kHeaderBytes, {from_host_.data(), n});
    from_host_.erase(from_host_.begin(), from_host_.begin() + n);
    tx_cnt_ += n;
  } else {
    // Only reached for a drained connection whose host side stopped
    // sending; it may still read (a half-close), so only SEND ends.
    h.op = kOpShutdown;
    h.flags = kShutdownSend;
    shutdown_sent_ = true;
  }
  uint8_t raw[kHeaderBytes];
  h.encode(raw);
  chain.write(0, raw);
  return static_cast<uint32_t>(kHeaderBytes) + n;
}

uint32_t Connection::wanted_events() const {
  uint32_t want = 0;
  if (established_ && !closing_ && !host_eof_ && !readable_ && from_host_.size() < kStashBytes) want |= EPOLLIN;
  if (!to_host_.empty()) want |= EPOLLOUT;
  return want;
}

}  // namespace snapvm::virtio::vsock
