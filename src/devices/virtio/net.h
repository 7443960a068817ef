// virtio-net (device id 1) on a host tap device.
//
// Frames keep virtio's 12-byte header (virtio_net_hdr_v1) end to end: the
// tap is opened with IFF_VNET_HDR and that header size, so checksum and
// segmentation offloads pass between guest and host kernels untouched.
// Offered: MAC, STATUS (link up), checksum offload both ways, TSO4/TSO6
// both ways, ECN, and mergeable receive buffers.
//
// What is copied:
//  - transmit (guest -> tap): nothing. The chain's readable buffers go to
//    writev() as they lie in guest memory, on the device's worker thread,
//    which KVM wakes through an ioeventfd: the guest's notification costs
//    no exit to the VMM, and the guest queues more frames while the
//    worker sends (one exit per frame capped guest->host TCP at a
//    hundredth of a veth's in the emulated test host).
//  - receive (tap -> guest): one copy. A frame is read into a 64 KiB buffer
//    (its length is unknown until read), then scattered into as many
//    receive chains as it needs (mergeable buffers: num_buffers says how
//    many), on the device's worker thread.
//
// Bounds: a transmit chain over kMaxFrameBytes is dropped; at most one
// received frame waits for guest buffers (the tap holds the rest, and
// drops when its own queue is full); a broken queue stops and says why.
// Nothing the guest does makes the VMM buffer more.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/thread_annotations.h"
#include "base/unique_fd.h"
#include "devices/virtio/device.h"
#include "devices/virtio/device_worker.h"

namespace snapvm::virtio {

using MacAddress = std::array<uint8_t, 6>;

// "02:fc:00:00:00:01" -> bytes; refuses anything else, and multicast.
Result<MacAddress> parse_mac(const std::string& text);
std::string format_mac(const MacAddress& mac);
// A locally administered unicast address from random bytes.
MacAddress random_mac();

class Net final : public VirtioDevice, private DeviceWorker::Client {
 public:
  // The largest frame either way: a 64 KiB GSO frame, its Ethernet header
  // and virtio's header.
  static constexpr size_t kHeaderBytes = 12;
  static constexpr size_t kMaxFrameBytes = 65536 + 14 + kHeaderBytes;

  // Called with the negotiated guest features, to tell the tap which
  // offloads the guest takes (TUNSETOFFLOAD); empty in tests.
  using OffloadFn = std::function<Status(uint64_t driver_features)>;

  // `backend` carries one frame (with its virtio header) per read or
  // write, non-blocking: a tap fd, or in tests a SOCK_SEQPACKET socket.
  static Result<std::unique_ptr<Net>> create(UniqueFd backend, MacAddress mac, OffloadFn set_offloads = {});
  ~Net() override;

  uint32_t device_id() const override { return 1; }
  uint64_t device_features() const override;
  int queue_notify_fd(size_t queue) const override { return queue == 1 ? transmit_fd_.get() : -1; }
  std::vector<uint16_t> queue_max_sizes() const override { return {256, 256}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void activate(Transport& transport, uint64_t driver_features) override;
  void queue_notify(size_t index) override;
  void reset() override;
  void set_paused(bool paused) override;
  // The MAC (a restored device keeps the one its guest knows unless the
  // restore gives another).
  std::vector<uint8_t> save_specific() const override;
  // The record is checked; the MAC this device was made with stands (a
  // clone may be given another; see mac_of_saved).
  Status restore_specific(std::span<const uint8_t> saved) override;
  static Result<MacAddress> mac_of_saved(std::span<const uint8_t> saved);

  const MacAddress& mac() const { return mac_; }
  struct Counters {
    uint64_t tx_frames = 0, tx_dropped = 0, rx_frames = 0, rx_dropped = 0;
  };
  Counters counters() const;

 private:
  Net(UniqueFd backend, MacAddress mac, OffloadFn set_offloads, std::unique_ptr<DeviceWorker> worker);
  // The worker's round: the tap's frames into receive chains, then the
  // transmit queue; the tap's place in the wait set follows.
  void round(std::span<const DeviceWorker::Ready> ready, bool running) override REQUIRES(worker_->round_mutex());
  // One receive round: frames from the backend into receive chains while
  // both last. Returns whether the guest should be interrupted.
  bool receive() REQUIRES(worker_->round_mutex());
  // Sends what the transmit queue holds (vCPU or worker; serialized by the
  // transport's queue lock).
  void serve_transmit(Transport& t);
  uint32_t transmit(const Chain& chain);
  // Reports the first failure of the tap (`error` 0: closed) and wakes the worker.
  void backend_broke(const char* doing, int error);

  // The thread, its wait set and the pause barrier. Locks: the worker's
  // round lock (held across a round: the rx_ state below), then mu_.
  const std::unique_ptr<DeviceWorker> worker_;
  UniqueFd backend_;
  MacAddress mac_;
  OffloadFn set_offloads_;
  UniqueFd transmit_fd_;  // the driver's transmit notifications, from KVM

  mutable Mutex mu_ ACQUIRED_AFTER(worker_->round_mutex());
  Transport* transport_ GUARDED_BY(mu_) = nullptr;
  bool mergeable_ GUARDED_BY(mu_) = false;  // VIRTIO_NET_F_MRG_RXBUF negotiated
  uint64_t activation_ GUARDED_BY(mu_) = 0;  // counts activations and resets
  // The frame read from the backend that did not fit the receive buffers
  // the guest had posted; it goes first once more are posted (if the
  // driver that posted them is still the same: rx_activation_).
  std::vector<uint8_t> rx_frame_ GUARDED_BY(worker_->round_mutex());
  size_t rx_frame_len_ GUARDED_BY(worker_->round_mutex()) = 0;
  uint64_t rx_activation_ GUARDED_BY(worker_->round_mutex()) = 0;
  // Waiting for receive buffers: the tap need not wake us.
  bool rx_waiting_ GUARDED_BY(worker_->round_mutex()) = false;
  bool backend_armed_ GUARDED_BY(worker_->round_mutex()) = false;  // EPOLLIN asked for the tap
  bool backend_in_wait_set_ GUARDED_BY(worker_->round_mutex()) = true;
  std::atomic<uint64_t> tx_frames_{0}, tx_dropped_{0}, rx_frames_{0}, rx_dropped_{0};
  std::atomic<bool> backend_failed_{false};  // the tap is gone: reported once, link down
};

}  // namespace snapvm::virtio
