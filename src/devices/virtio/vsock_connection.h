// One vsock stream between a guest port and a host socket: its credit
// accounting both ways, the bytes buffered in either direction and the
// header-only packets it owes the guest. Plus the queue those packets wait
// in for guest rx buffers (ControlQueue).
//
// Credit (virtio 1.1, 5.10.6.3): the guest may have at most kBufAlloc bytes
// in flight to us (to_host, until the host socket takes them; fwd_cnt counts
// what it took), and we send it at most peer_buf_alloc bytes beyond what it
// said it consumed (peer_fwd_cnt). Counters wrap as the spec's do.
//
// Not thread-safe: the device calls every method with its lock held.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/byte_codec.h"
#include "base/unique_fd.h"
#include "devices/virtio/virtqueue.h"
#include "devices/virtio/vsock_packet.h"

namespace snapvm::virtio::vsock {

// Bounds on what the guest and host peers make the device hold.
inline constexpr uint32_t kBufAlloc = 256 * 1024;  // what we advertise per connection
inline constexpr size_t kStashBytes = 64 * 1024;   // host data read ahead per connection
inline constexpr size_t kMaxConnections = 4096;    // connections and host clients before CONNECT
// Header-only packets (replies, resets, credit updates) waiting for guest rx
// buffers at most; past it the device stops taking tx packets.
inline constexpr size_t kMaxQueuedControlPackets = 256;

// A packet header from the host's `local` port to the guest's `peer` port,
// advertising kBufAlloc.
Header host_header(uint64_t guest_cid, uint32_t local, uint32_t peer, uint16_t op);

// Header-only packets for the guest, oldest first, encoded.
class ControlQueue {
 public:
  explicit ControlQueue(uint64_t guest_cid) : guest_cid_(guest_cid) {}
  // `fwd_cnt`: what the connection's host socket took, 0 for a reply that
  // belongs to no connection.
  void push(uint32_t local, uint32_t peer, uint16_t op, uint32_t flags, uint32_t fwd_cnt);
  // A reply (RST) to a packet of no connection: the ports swapped.
  void reply(const Header& to, uint16_t op) { push(to.dst_port, to.src_port, op, 0, 0); }
  // Whether the device must stop taking tx packets (their replies have no room).
  bool full() const { return bytes_.size() >= kMaxQueuedControlPackets * kHeaderBytes; }
  size_t size() const { return bytes_.size() / kHeaderBytes; }
  bool empty() const { return bytes_.empty(); }
  std::span<const uint8_t> packet(size_t index) const { return {bytes_.data() + index * kHeaderBytes, kHeaderBytes}; }
  void drop_front(size_t count) { bytes_.erase(bytes_.begin(), bytes_.begin() + static_cast<long>(count * kHeaderBytes)); }
  void clear() { bytes_.clear(); }

 private:
  uint64_t guest_cid_;
  std::vector<uint8_t> bytes_;
};

class Connection {
 public:
  // The guest's REQUEST to a host port, connected to host socket `fd`:
  // established at once, with the guest's credit from the request.
  static std::unique_ptr<Connection> from_guest(UniqueFd fd, const Header& request);
  // A host client (a CONNECT line, or a TCP forward) for guest port
  // `guest_port`, from host port `local`: established when the guest
  // answers the REQUEST; `reply_ok` sends the client "OK <local>\n" then.
  static std::unique_ptr<Connection> from_host(UniqueFd fd, uint32_t local, uint32_t guest_port, bool reply_ok);

  int fd() const { return fd_.get(); }
  uint32_t local_port() const { return local_port_; }
  uint32_t peer_port() const { return peer_port_; }
  bool established() const { return established_; }

  // Credit. Every packet from the guest says how much it can take.
  void update_peer_credit(const Header& h) {
    peer_buf_alloc_ = h.buf_alloc;
    peer_fwd_cnt_ = h.fwd_cnt;
  }
  // Bytes the guest can take now.
  uint32_t credit() const {
    uint32_t in_flight = tx_cnt_ - peer_fwd_cnt_;
    return in_flight >= peer_buf_alloc_ ? 0 : peer_buf_alloc_ - in_flight;
  }

  // Control packets: a header-only packet of this connection, telling the
  // guest our fwd_cnt.
  void control(ControlQueue& q, uint16_t op, uint32_t flags = 0);
  // The guest accepted our REQUEST (the caller checked that it was not
  // established yet). False: the CONNECT client went away before its "OK"
  // (reset the connection).
  bool on_response();
  // The guest's SHUTDOWN: with both flags it closed (deliver what it sent,
  // then reset); with SEND, the host socket's write side ends once flushed.
  void on_guest_shutdown(uint32_t flags, ControlQueue& q);

  // Guest -> host. The payload of an RW packet (at most kBufAlloc, checked by
  // the caller) at `offset` of `chain`; false when it overflows what we
  // advertised (the guest ignored our credit: reset it).
  bool take_from_guest(const Chain& chain, uint64_t offset, uint32_t len);
  // Sends what the guest sent to the host socket, as far as it takes it;
  // tells the guest its new credit once a quarter of it is free again.
  void flush_to_host(ControlQueue& q);

  // Host -> guest. Events of the host socket (EPOLLIN: readable; EPOLLOUT:
  // room to flush).
  void on_host_events(uint32_t events, ControlQueue& q);
  // Whether the guest is owed a packet: data within its credit, or a
  // shutdown once the host side ended and everything read was delivered.
  // Reads ahead from a readable socket first.
  bool has_packet_for_guest();
  // Writes that packet into rx chain `chain` (header, then as much data as
  // the chain, the credit and the buffer allow); returns the bytes written.
  uint32_t write_packet_for_guest(const Chain& chain, uint64_t guest_cid);

  // The host side failed, or the guest closed and all it sent was delivered:
  // reset it at the end of the round.
  bool finished() const { return dead_ || (closing_ && to_host_.empty()); }
  // The epoll events the connection wants of its socket now, and those it
  // is registered for (0: not in the wait set).
  uint32_t wanted_events() const;
  uint32_t registered_events() const { return registered_events_; }
  void set_registered_events(uint32_t events) { registered_events_ = events; }


 private:
  Connection(UniqueFd fd, uint32_t local, uint32_t peer) : fd_(std::move(fd)), local_port_(local), peer_port_(peer) {}
  void read_ahead();

  UniqueFd fd_;
  uint32_t local_port_ = 0;
  uint32_t peer_port_ = 0;
  bool established_ = false;
  bool reply_ok_line_ = false;  // a CONNECT client waits for "OK <port>\n"
  uint32_t peer_buf_alloc_ = 0;
  uint32_t peer_fwd_cnt_ = 0;
  uint32_t tx_cnt_ = 0;        // bytes sent to the guest
  uint32_t fwd_cnt_ = 0;       // guest bytes delivered to the host socket
  uint32_t fwd_cnt_sent_ = 0;  // fwd_cnt last told to the guest
  std::vector<uint8_t> to_host_;
  std::vector<uint8_t> from_host_;  // read ahead, waiting for rx buffers or credit
  bool readable_ = false;
  bool host_eof_ = false;
  bool shutdown_sent_ = false;
  bool guest_done_sending_ = false;
  bool dead_ = false;     // the host side failed: reset at the end of this round
  bool closing_ = false;  // the guest closed: reset once to_host is delivered
  uint32_t registered_events_ = 0;
};

}  // namespace snapvm::virtio::vsock
