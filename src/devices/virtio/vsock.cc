#include "devices/virtio/vsock.h"

#include <sys/epoll.h>
#include <sys/random.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "base/byte_codec.h"
#include "devices/virtio/vsock_packet.h"

namespace snapvm::virtio {
namespace {

using namespace vsock;

// The worker tokens of the connections' sockets: kTokenConn << 56 | fd (the
// host side's tokens have other kinds).
constexpr uint64_t kTokenConn = 5;
static_assert(!HostSide::owns(kTokenConn << 56));

uint64_t conn_key(uint32_t local, uint32_t peer) { return uint64_t{local} << 32 | peer; }

}  // namespace

Result<std::unique_ptr<Vsock>> Vsock::create(uint64_t guest_cid, const std::string& uds_path,
                                             std::vector<state::PortForward> forwards) {
  if (guest_cid < 3 || guest_cid > 0xffffffffu) {
    return make_error(ErrorCode::kInvalidArgument, "vsock guest CID {} is not in 3..2^32-1", guest_cid);
  }
  auto worker = SNAPVM_TRY(DeviceWorker::create(64));
  auto host = SNAPVM_TRY(HostSide::create(uds_path, guest_cid, forwards, *worker));
  std::unique_ptr<Vsock> v(new Vsock(guest_cid, uds_path, std::move(forwards), std::move(worker), std::move(host)));
  v->worker_->start(*v);
  return v;
}

Vsock::Vsock(uint64_t guest_cid, std::string uds_path, std::vector<state::PortForward> forwards,
             std::unique_ptr<DeviceWorker> worker, std::unique_ptr<HostSide> host)
    : worker_(std::move(worker)),
      guest_cid_(guest_cid),
      uds_path_(std::move(uds_path)),
      forwards_(std::move(forwards)),
      host_(std::move(host)),
      control_(guest_cid) {
  // Host ports start somewhere new in every process: a VM restored from a
  // snapshot may still hold connections to ports its first life used.
  uint32_t r = 0;
  (void)!::getrandom(&r, sizeof r, 0);
  next_local_port_ = (1u << 30) + (r % (1u << 29));
}

// The worker first: its rounds use everything else. The host side then
// removes the socket file.
Vsock::~Vsock() { worker_->stop(); }

std::vector<state::PortForward> Vsock::forwards() const { return forwards_; }

// Bytes per connection in records of older versions, which saved the table.
constexpr size_t kSavedConnectionBytes = 4 + 4 + 1 + 4 + 4 + 4 + 4;

std::vector<uint8_t> Vsock::save_specific() const {
  ByteWriter w;
  w.u64(guest_cid_);
  w.u32(0);  // connections: none survive a restore, so none are saved
  return w.take();
}

Result<uint64_t> Vsock::guest_cid_of_saved(std::span<const uint8_t> saved) {
  ByteReader r(saved, 0, "virtio-vsock state");
  const uint64_t cid = r.u64();
  const uint32_t connections = r.u32();
  // Older snapshots list their connections; they are read past, never
  // trusted to size anything.
  if (!r.ok() || r.remaining() != uint64_t{connections} * kSavedConnectionBytes) {
    return make_error(ErrorCode::kDataLoss, "virtio-vsock state: {} bytes do not hold a CID and {} connections",
                      saved.size(), connections);
  }
  return cid;
}

Status Vsock::restore_specific(std::span<const uint8_t> saved) {
  const uint64_t cid = SNAPVM_TRY(guest_cid_of_saved(saved));
  if (cid != guest_cid_) {
    return make_error(ErrorCode::kDataLoss, "virtio-vsock state: guest CID {}, this device has {}", cid, guest_cid_);
  }
  return {};
}

std::string Vsock::describe() const {
  MutexLock lock(mu_);
  std::string reset = reset_event_ == ResetEvent::kNone   ? std::string("no transport reset outstanding")
                      : reset_event_ == ResetEvent::kToSend ? std::string("transport reset waiting for an event buffer")
                                                            : fmt::format("transport reset sent, waiting for the driver "
                                                                          "to re-post its buffer (event queue avail "
                                                                          "index {} when sent)",
                                                                          reset_avail_idx_);
  return fmt::format("vsock: {}, {} connections, {} host connections waiting for the guest, {} control packets "
                     "queued{}{}",
                     reset, conns_.size(), host_->waiting(), control_.size(), rx_starved_ ? ", out of rx buffers" : "",
                     worker_->paused() ? ", paused" : "");
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
  worker_->kick();
}

void Vsock::queue_notify(size_t) { worker_->kick(); }

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
  worker_->kick();
}

// A round that began before the pause may still be touching the queues or
// about to raise an interrupt: the worker waits for it to end.
void Vsock::set_paused(bool paused) { worker_->set_paused(paused); }

void Vsock::round(std::span<const DeviceWorker::Ready> ready, bool running) {
  Signals to_raise;
  {
    MutexLock lock(mu_);
    to_raise = serve(ready, running);
  }
  // Outside the lock: the transport takes its own lock to raise the irq.
  if (Transport* t = to_raise.transport) {
    if (to_raise.tx) t->signal_used(1);
    if (to_raise.rx) t->signal_used(0);
    if (to_raise.event) t->signal_used(2);
  }
}

Vsock::Signals Vsock::serve(std::span<const DeviceWorker::Ready> ready, bool running) {
  for (const auto& r : ready) {
    if (HostSide::owns(r.token)) {
      for (auto& s : host_->on_ready(r.token, conns_.size(), admission())) start_host_connection(std::move(s));
    } else if (r.token >> 56 == kTokenConn) {
      on_conn(static_cast<int>(r.token & ((1ull << 56) - 1)), r.events);
    }
  }
  Signals out;
  if (transport_ != nullptr && running) {
    MutexLock queues(transport_->queues_mutex());
    Virtqueue &rxq = transport_->queue(0), &txq = transport_->queue(1), &evq = transport_->queue(2);
    out.event = advance_reset_event(evq);
    if (admission() == HostSide::Admission::kNow) {
      for (auto& s : host_->take_waiting()) start_host_connection(std::move(s));
    }
    // Replies drained into rx buffers make room for more tx packets.
    // A broken queue reports "signal" every time without progress, so
    // stop on errors, and bound the passes whatever the guest does.
    for (int pass = 0; pass < 64; ++pass) {
      bool was_throttled = control_.full();
      bool tx = process_tx(txq), rx = fill_rx(rxq);
      out.tx |= tx;
      out.rx |= rx;
      if (!rxq.error().empty() || !txq.error().empty()) break;
      if (!rx || !(tx || was_throttled) || control_.full()) break;
    }
    out.transport = transport_;
  }
  update_interest();
  return out;
}

// Host streams go to the guest once a driver is active and has handled any
// transport reset (see reset_event_).
HostSide::Admission Vsock::admission() const {
  if (transport_ == nullptr) return HostSide::Admission::kRefuse;
  return reset_event_ == ResetEvent::kNone ? HostSide::Admission::kNow : HostSide::Admission::kHold;
}

void Vsock::start_host_connection(HostStream stream) {
  uint32_t local = allocate_port(stream.guest_port);
  auto c = Connection::from_host(std::move(stream.fd), local, stream.guest_port, stream.reply_ok);
  Connection& conn = *c;
  conns_[conn_key(local, stream.guest_port)] = std::move(c);
  conn.control(control_, kOpRequest);
}

uint32_t Vsock::allocate_port(uint32_t peer) {
  for (;;) {
    uint32_t p = next_local_port_++;
    if (next_local_port_ == 0) next_local_port_ = 1u << 30;
    if (conns_.count(conn_key(p, peer)) == 0) return p;
  }
}

// Sends the transport-reset event once the guest has posted a buffer for
// it, then watches for the guest to re-post one (it does after handling
// the event). Returns whether the event queue needs an interrupt.
bool Vsock::advance_reset_event(Virtqueue& eq) {
  const GuestMemory& mem = transport_->memory();
  switch (reset_event_) {
    case ResetEvent::kNone: return false;
    case ResetEvent::kToSend: {
      auto chain = eq.pop(mem);
      if (!chain) {
        if (!eq.error().empty()) reset_event_ = ResetEvent::kNone;  // nothing to wait for
        return !eq.error().empty();
      }
      // The index before the event is used: once the buffer is in the
      // used ring a running driver may consume it and re-post at once,
      // and an index read after that would wait for a second re-post
      // that never comes (every host CONNECT would then hang).
      reset_avail_idx_ = eq.driver_avail_idx(mem).value_or(0);
      uint8_t event[4] = {0, 0, 0, 0};  // struct virtio_vsock_event { le32 id; }, id 0: transport reset
      chain->write(0, event);
      eq.push_used(mem, *chain, 4);
      reset_event_ = ResetEvent::kAwaitingAck;
      return true;
    }
    case ResetEvent::kAwaitingAck: {
      auto idx = eq.driver_avail_idx(mem);
      // A broken event queue will never acknowledge: stop waiting for it.
      if (!idx || *idx != reset_avail_idx_) reset_event_ = ResetEvent::kNone;
      return false;
    }
  }
  return false;
}

void Vsock::on_conn(int fd, uint32_t events) {
  for (auto& [key, c] : conns_) {
    if (c->fd() != fd) continue;
    c->on_host_events(events, control_);
    return;
  }
}

void Vsock::remove(uint64_t key) {
  auto it = conns_.find(key);
  if (it == conns_.end()) return;
  if (it->second->registered_events() != 0) worker_->remove(it->second->fd());
  conns_.erase(it);
}

void Vsock::reset_conn(uint64_t key) {
  auto it = conns_.find(key);
  if (it == conns_.end()) return;
  it->second->control(control_, kOpRst);
  remove(key);
}

// Guest -> host: the packets on the tx queue, while the replies they may
// provoke (RST, RESPONSE, credit updates) have room. A guest that sends
// without posting rx buffers fills that room and then its own tx queue:
// back-pressure instead of host memory.
bool Vsock::process_tx(Virtqueue& q) {
  const GuestMemory& mem = transport_->memory();
  bool any = false;
  while (!control_.full()) {
    auto chain = q.pop(mem);
    if (!chain) break;
    any = true;
    uint8_t raw[kHeaderBytes];
    if (chain->read(0, raw) == kHeaderBytes) handle_packet(Header::decode(raw), *chain);
    q.push_used(mem, *chain, 0);
  }
  return any || !q.error().empty();
}

void Vsock::handle_packet(const Header& h, const Chain& chain) {
  uint64_t payload = chain.readable_bytes() - kHeaderBytes;
  if (h.src_cid != guest_cid_ || h.dst_cid != kHostCid || h.type != kTypeStream || h.len > payload ||
      h.len > kBufAlloc) {
    if (h.op != kOpRst) control_.reply(h, kOpRst);
    return;
  }
  uint64_t key = conn_key(h.dst_port, h.src_port);
  auto it = conns_.find(key);
  Connection* c = it == conns_.end() ? nullptr : it->second.get();
  if (c != nullptr) c->update_peer_credit(h);
  switch (h.op) {
    case kOpRequest: {
      if (c != nullptr || conns_.size() >= kMaxConnections) {
        control_.reply(h, kOpRst);
        return;
      }
      auto fd = host_->connect(h.dst_port);
      if (!fd.valid()) {
        control_.reply(h, kOpRst);
        return;
      }
      auto nc = Connection::from_guest(std::move(fd), h);
      Connection& ref = *nc;
      conns_[key] = std::move(nc);
      ref.control(control_, kOpResponse);
      return;
    }
    case kOpResponse:
      if (c == nullptr || c->established()) {
        control_.reply(h, kOpRst);
        if (c != nullptr) remove(key);
        return;
      }
      if (!c->on_response()) reset_conn(key);
      return;
    case kOpRw:
      if (c == nullptr || !c->established()) {
        control_.reply(h, kOpRst);
        return;
      }
      if (!c->take_from_guest(chain, kHeaderBytes, h.len)) {  // the guest ignored our credit
        reset_conn(key);
        return;
      }
      c->flush_to_host(control_);
      return;
    case kOpShutdown:
      if (c != nullptr) c->on_guest_shutdown(h.flags, control_);
      return;
    case kOpRst:
      if (c != nullptr) remove(key);
      return;
    case kOpCreditUpdate:
      return;
    case kOpCreditRequest:
      if (c != nullptr) c->control(control_, kOpCreditUpdate);
      return;
    default:
      control_.reply(h, kOpRst);
      if (c != nullptr) remove(key);
  }
}

// Host -> guest: control packets first, then data, while rx buffers last.
bool Vsock::fill_rx(Virtqueue& q) {
  const GuestMemory& mem = transport_->memory();
  bool any = false;
  rx_starved_ = false;
  size_t ctl = 0;
  for (;;) {
    if (ctl < control_.size()) {
      auto chain = q.pop(mem);
      if (!chain) break;
      chain->write(0, control_.packet(ctl));
      q.push_used(mem, *chain, kHeaderBytes);
      ++ctl;
      any = true;
      continue;
    }
    Connection* c = next_sender();
    if (c == nullptr) break;
    auto chain = q.pop(mem);
    if (!chain) break;
    q.push_used(mem, *chain, c->write_packet_for_guest(*chain, guest_cid_));
    any = true;
  }
  control_.drop_front(ctl);
  rx_starved_ = !control_.empty() || next_sender() != nullptr;
  return any || !q.error().empty();
}

// A connection with something for the guest (Connection::has_packet_for_guest).
Connection* Vsock::next_sender() {
  for (auto& [key, c] : conns_) {
    if (c->has_packet_for_guest()) return c.get();
  }
  return nullptr;
}

// Resets the finished connections, then asks the worker for what each
// socket's connection waits for.
void Vsock::update_interest() {
  std::vector<uint64_t> finished;
  for (auto& [key, c] : conns_) {
    if (c->finished()) finished.push_back(key);
  }
  for (uint64_t key : finished) reset_conn(key);
  for (auto& [key, c] : conns_) {
    const uint32_t want = c->wanted_events();
    if (want == c->registered_events()) continue;
    const uint64_t token = kTokenConn << 56 | static_cast<uint64_t>(c->fd());
    if (c->registered_events() == 0) {
      (void)worker_->add(c->fd(), want, token);
    } else if (want == 0) {
      worker_->remove(c->fd());
    } else {
      worker_->modify(c->fd(), want, token);
    }
    c->set_registered_events(want);
  }
}

}  // namespace snapvm::virtio
