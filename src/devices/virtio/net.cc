#include "devices/virtio/net.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "base/byte_codec.h"

namespace snapvm::virtio {
namespace {

// Feature bits (virtio 1.x, 5.1.3).
constexpr uint64_t kCsum = 1ull << 0;
constexpr uint64_t kGuestCsum = 1ull << 1;
constexpr uint64_t kMac = 1ull << 5;
constexpr uint64_t kGuestTso4 = 1ull << 7;
constexpr uint64_t kGuestTso6 = 1ull << 8;
constexpr uint64_t kGuestEcn = 1ull << 9;
constexpr uint64_t kHostTso4 = 1ull << 11;
constexpr uint64_t kHostTso6 = 1ull << 12;
constexpr uint64_t kHostEcn = 1ull << 13;
constexpr uint64_t kMrgRxbuf = 1ull << 15;
constexpr uint64_t kStatus = 1ull << 16;
constexpr uint16_t kLinkUp = 1;
constexpr size_t kNumBuffersOffset = 10;  // in virtio_net_hdr_v1

constexpr uint64_t kTokenBackend = 2, kTokenTransmit = 3;  // the worker's tokens
constexpr uint32_t kStateVersion = 1;

}  // namespace

Result<MacAddress> parse_mac(const std::string& text) {
  MacAddress mac{};
  unsigned v[6];
  char tail = 0;
  if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6 ||
      text.size() != 17) {
    return make_error(ErrorCode::kInvalidArgument, "MAC address `{}`: expected six hex bytes as 02:fc:00:00:00:01",
                      text);
  }
  for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(v[i]);
  if (mac[0] & 1) return make_error(ErrorCode::kInvalidArgument, "MAC address {}: a multicast address", text);
  return mac;
}

std::string format_mac(const MacAddress& m) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]);
}

MacAddress random_mac() {
  MacAddress mac{};
  (void)!::getrandom(mac.data(), mac.size(), 0);
  mac[0] = static_cast<uint8_t>((mac[0] & 0xfe) | 0x02);  // unicast, locally administered
  return mac;
}

Result<std::unique_ptr<Net>> Net::create(UniqueFd backend, MacAddress mac, OffloadFn set_offloads) {
  auto worker = SNAPVM_TRY(DeviceWorker::create(4));
  std::unique_ptr<Net> n(new Net(std::move(backend), mac, std::move(set_offloads), std::move(worker)));
  int transmit = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (transmit < 0) return errno_error("eventfd");
  n->transmit_fd_.reset(transmit);
  SNAPVM_CHECK_OK(n->worker_->add(transmit, EPOLLIN, kTokenTransmit));
  // Level-triggered, armed only while frames can go somewhere (round()).
  SNAPVM_CHECK_OK(n->worker_->add(n->backend_.get(), 0, kTokenBackend, "epoll_ctl (tap)"));
  n->worker_->start(*n);
  return n;
}

Net::Net(UniqueFd backend, MacAddress mac, OffloadFn set_offloads, std::unique_ptr<DeviceWorker> worker)
    : worker_(std::move(worker)), backend_(std::move(backend)), mac_(mac), set_offloads_(std::move(set_offloads)) {
  MutexLock lock(worker_->round_mutex());
  rx_frame_.resize(kMaxFrameBytes);
}

Net::~Net() { worker_->stop(); }

uint64_t Net::device_features() const {
  return kCsum | kGuestCsum | kMac | kGuestTso4 | kGuestTso6 | kGuestEcn | kHostTso4 | kHostTso6 | kHostEcn |
         kMrgRxbuf | kStatus;
}

void Net::read_config(uint64_t offset, std::span<uint8_t> data) const {
  uint8_t config[8];
  std::memcpy(config, mac_.data(), 6);
  // The link goes down for good when the tap does (run() tells the driver).
  const uint16_t status = backend_failed_.load() ? 0 : kLinkUp;
  config[6] = status & 0xff;
  config[7] = status >> 8;
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < sizeof config ? config[offset + i] : 0;
}

void Net::activate(Transport& transport, uint64_t driver_features) {
  if (set_offloads_) {
    auto r = set_offloads_(driver_features);
    if (!r) std::fprintf(stderr, "snapvm: virtio-net: %s\n", r.error().describe().c_str());
  }
  {
    MutexLock lock(mu_);
    transport_ = &transport;
    mergeable_ = (driver_features & kMrgRxbuf) != 0;
    ++activation_;
  }
  worker_->kick();
}

void Net::reset() {
  {
    MutexLock lock(mu_);
    transport_ = nullptr;
    ++activation_;  // a frame the worker holds belongs to the old driver: dropped
  }
  worker_->kick();
}

// A receive round that began before the pause may still be touching the
// queue or about to interrupt: the worker waits for it to end.
void Net::set_paused(bool paused) { worker_->set_paused(paused); }

void Net::queue_notify(size_t index) {
  if (index == 0) {  // the guest posted receive buffers
    worker_->kick();
    return;
  }
  if (index != 1) return;
  Transport* t;
  {
    MutexLock lock(mu_);
    t = transport_;
    if (t == nullptr || worker_->paused()) return;
  }
  serve_transmit(*t);
}

void Net::serve_transmit(Transport& t) {
  serve_queue(t, 1, [this](const Chain& chain) { return transmit(chain); });
}

uint32_t Net::transmit(const Chain& chain) {
  const uint64_t bytes = chain.readable_bytes();
  if (bytes < kHeaderBytes || bytes > kMaxFrameBytes || !chain.writable.empty()) {
    ++tx_dropped_;  // not a frame a driver sends
    return 0;
  }
  static_assert(kMaxQueueSize <= IOV_MAX, "a chain must fit one writev");
  // The walker holds a chain to the queue's size (at most kMaxQueueSize,
  // also writev's IOV_MAX); the check keeps this array safe on its own.
  iovec iov[kMaxQueueSize];
  if (chain.readable.size() > std::size(iov)) {
    ++tx_dropped_;
    return 0;
  }
  size_t n = 0;
  for (const auto& b : chain.readable) {
    if (b.len == 0) continue;
    iov[n++] = {b.data, b.len};
  }
  for (;;) {
    ssize_t w = ::writev(backend_.get(), iov, static_cast<int>(n));
    if (w >= 0) {
      ++tx_frames_;
      return 0;
    }
    if (errno == EINTR) continue;
    // A full tap queue drops, as a busy link would, and so does a tap that
    // is not up yet (EIO: a clone announces itself before its host side is
    // configured); anything else means the tap is gone or broken.
    if (errno != EAGAIN && errno != EIO && errno != ENOBUFS) backend_broke("writing to", errno);
    ++tx_dropped_;
    return 0;
  }
}

bool Net::receive() {
  Transport* t;
  bool mergeable;
  uint64_t activation;
  {
    MutexLock lock(mu_);
    t = transport_;
    mergeable = mergeable_;
    activation = activation_;
    if (t == nullptr || worker_->paused()) return false;
  }
  if (rx_frame_len_ != 0 && rx_activation_ != activation) {
    rx_frame_len_ = 0;  // read while another driver was active
    ++rx_dropped_;
  }
  bool delivered = false;
  for (;;) {
    if (rx_frame_len_ == 0) {
      ssize_t n = ::read(backend_.get(), rx_frame_.data(), rx_frame_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {  // a tap never reads empty: 0 is a closed backend
        if (n == 0 || errno != EAGAIN) backend_broke("reading from", n == 0 ? 0 : errno);
        rx_waiting_ = false;
        return delivered;
      }
      if (static_cast<size_t>(n) <= kHeaderBytes) {
        ++rx_dropped_;
        continue;
      }
      rx_frame_len_ = static_cast<size_t>(n);
      rx_activation_ = activation;
    }
    const GuestMemory& mem = t->memory();
    MutexLock queues(t->queues_mutex());
    Virtqueue& q = t->queue(0);
    std::vector<Chain> chains;
    uint64_t room = 0;
    while (room < rx_frame_len_) {
      auto c = q.pop(mem);
      if (!c) break;
      room += c->writable_bytes();
      chains.push_back(std::move(*c));
      if (!mergeable) break;
    }
    if (!q.error().empty()) {
      // The driver broke the queue: the caller's interrupt tells it to
      // reset (the transport sees the error), and the tap waits until then.
      rx_waiting_ = true;
      return true;
    }
    if (room < rx_frame_len_) {
      // Back to the driver's side of the ring, untouched: the device has
      // not used them. Only this thread pops the receive queue.
      q.set_indices(static_cast<uint16_t>(q.last_avail_idx() - chains.size()), q.next_used_idx());
      if (!mergeable && !chains.empty()) {
        ++rx_dropped_;  // a buffer too small for this frame: no use waiting
        rx_frame_len_ = 0;
        continue;
      }
      rx_waiting_ = true;  // until the guest posts more
      return delivered;
    }
    const uint16_t count = static_cast<uint16_t>(chains.size());
    std::memcpy(rx_frame_.data() + kNumBuffersOffset, &count, 2);
    size_t at = 0;
    for (const auto& c : chains) {
      const size_t here = std::min<uint64_t>(c.writable_bytes(), rx_frame_len_ - at);
      c.write(0, {rx_frame_.data() + at, here});
      q.push_used(mem, c, static_cast<uint32_t>(here), /*publish=*/false);
      at += here;
    }
    q.publish_used(mem);  // all of the frame's chains at once
    ++rx_frames_;
    rx_frame_len_ = 0;
    delivered = true;
  }
}

void Net::backend_broke(const char* doing, int error) {
  if (backend_failed_.exchange(true)) return;
  std::fprintf(stderr, "snapvm: virtio-net: %s the tap failed (%s); the guest's link is down and frames are dropped\n",
               doing, error == 0 ? "it was closed" : std::strerror(error));
  worker_->kick();  // the worker takes the tap out of its wait set and tells the driver
}

void Net::round(std::span<const DeviceWorker::Ready> ready, bool running) {
  for (const auto& r : ready) {
    if (r.token == kTokenTransmit) {
      uint64_t v;
      (void)!::read(transmit_fd_.get(), &v, sizeof v);
    } else if ((r.events & (EPOLLERR | EPOLLHUP)) != 0) {
      backend_broke("polling", 0);  // reported even while disarmed, driver or not
    }
  }
  Transport* t;
  {
    MutexLock lock(mu_);
    t = running ? transport_ : nullptr;
  }
  rx_waiting_ = false;
  if (t != nullptr && receive()) t->signal_used(0);
  // Every round, not only on a transmit notification: one that came while
  // paused (or before a restore) is served once the device runs.
  if (t != nullptr) serve_transmit(*t);
  if (backend_failed_.load() && backend_in_wait_set_) {
    // A dead tap polls as an error whatever events are asked for: remove
    // it, or this thread would spin on it.
    worker_->remove(backend_.get());
    backend_in_wait_set_ = false;
    if (t != nullptr) t->signal_config_change();  // link status: down
  }
  // The tap wakes this thread only while its frames have somewhere to go:
  // an active, running device with receive buffers.
  const bool want = t != nullptr && !rx_waiting_ && !backend_failed_.load();
  if (backend_in_wait_set_ && want != backend_armed_) {
    worker_->modify(backend_.get(), want ? static_cast<uint32_t>(EPOLLIN) : 0u, kTokenBackend);
    backend_armed_ = want;
  }
}

std::vector<uint8_t> Net::save_specific() const {
  ByteWriter w;
  w.u32(kStateVersion);
  for (uint8_t b : mac_) w.u8(b);
  return w.take();
}

Status Net::restore_specific(std::span<const uint8_t> saved) {
  SNAPVM_TRY(mac_of_saved(saved));
  return {};
}

Result<MacAddress> Net::mac_of_saved(std::span<const uint8_t> saved) {
  ByteReader r(saved, 0, "virtio-net state");
  uint32_t version = r.u32();
  MacAddress mac{};
  for (auto& b : mac) b = r.u8();
  if (!r.ok() || version != kStateVersion || saved.size() != 4 + mac.size()) {
    return make_error(ErrorCode::kDataLoss, "virtio-net state: {} bytes of version {}, expected {} bytes of version {}",
                      saved.size(), version, 4 + mac.size(), kStateVersion);
  }
  return mac;
}

Net::Counters Net::counters() const {
  return {tx_frames_.load(), tx_dropped_.load(), rx_frames_.load(), rx_dropped_.load()};
}

}  // namespace snapvm::virtio
