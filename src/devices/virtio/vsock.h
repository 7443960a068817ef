// virtio-vsock (device id 19) with the host side in Firecracker's protocol:
//
//  - host-initiated: a client connects to the Unix socket `uds_path` and
//    writes "CONNECT <port>\n"; once the guest accepts, it reads
//    "OK <host port>\n" and the socket carries the stream;
//  - guest-initiated: a guest connection to host port P is connected to the
//    Unix socket "<uds_path>_P", or refused (RST) when nobody listens there;
//  - port forwards: a TCP listener on the host whose connections are
//    streams to a guest port (what `snapvm run --publish` sets up).
//
// One worker thread owns every connection; vCPU threads only kick it.
// Everything the guest sends is checked: packet sizes, credit, addresses.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/thread_annotations.h"
#include "base/unique_fd.h"
#include "devices/virtio/device.h"
#include "state/host_state.h"

namespace snapvm::virtio {

class Vsock final : public VirtioDevice {
 public:
  static Result<std::unique_ptr<Vsock>> create(uint64_t guest_cid, const std::string& uds_path,
                                               std::vector<state::PortForward> forwards = {});
  ~Vsock() override;

  uint32_t device_id() const override { return 19; }
  uint64_t device_features() const override { return 0; }
  std::vector<uint16_t> queue_max_sizes() const override { return {256, 256, 64}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void activate(Transport& transport, uint64_t driver_features) override;
  void queue_notify(size_t index) override;
  void reset() override;
  void set_paused(bool paused) override;
  // Host connections did not survive: tell the guest (transport reset event)
  // so its sockets fail fast and services reconnect.
  void restored() override;

  // The connection table: per connection its ports, state and credit
  // counters (restore resets them with a transport-reset event).
  std::vector<uint8_t> save_specific() const override;

  // Header-only packets (replies, resets, credit updates) waiting for guest
  // rx buffers at most; past it the device stops taking tx packets.
  static constexpr size_t kMaxQueuedControlPackets = 256;

  uint64_t guest_cid() const { return guest_cid_; }
  const std::string& uds_path() const { return uds_path_; }
  // The TCP ports the forwards actually listen on (port 0 asks the kernel).
  std::vector<state::PortForward> forwards() const;
  size_t connection_count() const;
  std::string describe() const override;

  struct Conn;

 private:
  Vsock(uint64_t guest_cid, std::string uds_path);
  void run();
  void kick();

  uint64_t guest_cid_;
  std::string uds_path_;
  UniqueFd listener_;
  UniqueFd epoll_;
  UniqueFd kick_fd_;
  std::vector<std::pair<state::PortForward, UniqueFd>> forward_listeners_;

  // Held by the worker for a whole round, interrupts included: set_paused
  // takes it to know that no round is under way.
  Mutex round_mu_;
  mutable Mutex mu_ ACQUIRED_AFTER(round_mu_);  // everything below; queues: see Transport
  Transport* transport_ GUARDED_BY(mu_) = nullptr;
  std::map<uint64_t, std::unique_ptr<Conn>> conns_ GUARDED_BY(mu_);  // key: local port << 32 | peer port
  struct Pending;
  std::map<int, std::unique_ptr<Pending>> pending_ GUARDED_BY(mu_);  // Unix clients before CONNECT
  std::vector<uint8_t> control_ GUARDED_BY(mu_);                     // queued header-only packets for the guest
  uint32_t next_local_port_ GUARDED_BY(mu_) = 1u << 30;
  bool rx_starved_ GUARDED_BY(mu_) = false;
  bool paused_ GUARDED_BY(mu_) = false;
  // A restored guest still holds sockets of connections that did not
  // survive; the transport-reset event makes it drop them. Host-initiated
  // connections wait until the guest has handled that event (it re-posts
  // the event buffer, moving the event queue's avail index past
  // reset_avail_idx_): a CONNECT forwarded earlier could be accepted and
  // then torn down by the reset without a word to the host.
  enum class ResetEvent { kNone, kToSend, kAwaitingAck };
  ResetEvent reset_event_ GUARDED_BY(mu_) = ResetEvent::kNone;
  uint16_t reset_avail_idx_ GUARDED_BY(mu_) = 0;

  std::atomic<bool> stop_{false};
  std::thread worker_;

  friend class VsockWorker;
};

}  // namespace snapvm::virtio
