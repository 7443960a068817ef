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
// This file is the virtio side: the queues, the packets of the tx queue,
// rx buffers filled with replies and data, the transport-reset event, the
// connection table. Each stream is a vsock::Connection (vsock_connection.h:
// credit, flushing, control packets); vsock::HostSide (vsock_host.h) serves
// the Unix socket, the "<uds_path>_<port>" connects and the TCP forwards.
// One worker thread (DeviceWorker) owns every connection; vCPU threads only
// kick it. Everything the guest sends is checked: packet sizes, credit,
// addresses.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/thread_annotations.h"
#include "devices/virtio/device.h"
#include "devices/virtio/device_worker.h"
#include "devices/virtio/vsock_connection.h"
#include "devices/virtio/vsock_host.h"
#include "state/host_state.h"

namespace snapvm::virtio {

class Vsock final : public VirtioDevice, private DeviceWorker::Client {
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

  // The guest CID, and a count of connections that is always 0: none
  // survives a restore (their host sockets are gone; restored() tells the
  // guest with a transport-reset event), so none is saved.
  std::vector<uint8_t> save_specific() const override;
  // The record's guest CID must be this device's (restore plans read it
  // with guest_cid_of_saved). Older records' connection tables are checked
  // for size and passed over.
  Status restore_specific(std::span<const uint8_t> saved) override;
  static Result<uint64_t> guest_cid_of_saved(std::span<const uint8_t> saved);

  // Header-only packets (replies, resets, credit updates) waiting for guest
  // rx buffers at most; past it the device stops taking tx packets.
  static constexpr size_t kMaxQueuedControlPackets = vsock::kMaxQueuedControlPackets;

  uint64_t guest_cid() const { return guest_cid_; }
  const std::string& uds_path() const { return uds_path_; }
  // The TCP ports the forwards actually listen on (port 0 asks the kernel).
  std::vector<state::PortForward> forwards() const;
  size_t connection_count() const;
  std::string describe() const override;

 private:
  Vsock(uint64_t guest_cid, std::string uds_path, std::vector<state::PortForward> forwards,
        std::unique_ptr<DeviceWorker> worker, std::unique_ptr<vsock::HostSide> host);

  // Which used-buffer interrupts a round owes the guest.
  struct Signals {
    Transport* transport = nullptr;
    bool rx = false, tx = false, event = false;
  };
  // The worker's round: serve(), then the interrupts it owes, outside mu_.
  void round(std::span<const DeviceWorker::Ready> ready, bool running) override REQUIRES(worker_->round_mutex());
  // Host events, then (when running) the queues, then the connections'
  // places in the wait set.
  Signals serve(std::span<const DeviceWorker::Ready> ready, bool running) REQUIRES(mu_);
  vsock::HostSide::Admission admission() const REQUIRES(mu_);
  void start_host_connection(vsock::HostStream stream) REQUIRES(mu_);
  uint32_t allocate_port(uint32_t peer) REQUIRES(mu_);
  bool advance_reset_event(Virtqueue& eq) REQUIRES(mu_);
  void on_conn(int fd, uint32_t events) REQUIRES(mu_);
  void remove(uint64_t key) REQUIRES(mu_);
  void reset_conn(uint64_t key) REQUIRES(mu_);
  bool process_tx(Virtqueue& q) REQUIRES(mu_);
  void handle_packet(const vsock::Header& h, const Chain& chain) REQUIRES(mu_);
  bool fill_rx(Virtqueue& q) REQUIRES(mu_);
  vsock::Connection* next_sender() REQUIRES(mu_);
  void update_interest() REQUIRES(mu_);

  // The thread, its wait set and the pause barrier. Locks: the worker's
  // round lock (held across a whole round, interrupts included), then mu_,
  // then the transport's queue lock.
  const std::unique_ptr<DeviceWorker> worker_;
  const uint64_t guest_cid_;
  const std::string uds_path_;
  const std::vector<state::PortForward> forwards_;  // as they listen

  mutable Mutex mu_ ACQUIRED_AFTER(worker_->round_mutex());  // everything below; queues: see Transport
  const std::unique_ptr<vsock::HostSide> host_ PT_GUARDED_BY(mu_);  // with its clients waiting for the guest
  Transport* transport_ GUARDED_BY(mu_) = nullptr;
  // key: local port << 32 | peer port
  std::map<uint64_t, std::unique_ptr<vsock::Connection>> conns_ GUARDED_BY(mu_);
  vsock::ControlQueue control_ GUARDED_BY(mu_);  // header-only packets for the guest
  uint32_t next_local_port_ GUARDED_BY(mu_) = 1u << 30;
  bool rx_starved_ GUARDED_BY(mu_) = false;
  // A restored guest still holds sockets of connections that did not
  // survive; the transport-reset event makes it drop them. Host-initiated
  // connections wait until the guest has handled that event (it re-posts
  // the event buffer, moving the event queue's avail index past
  // reset_avail_idx_): a CONNECT forwarded earlier could be accepted and
  // then torn down by the reset without a word to the host.
  enum class ResetEvent { kNone, kToSend, kAwaitingAck };
  ResetEvent reset_event_ GUARDED_BY(mu_) = ResetEvent::kNone;
  uint16_t reset_avail_idx_ GUARDED_BY(mu_) = 0;
};

}  // namespace snapvm::virtio
