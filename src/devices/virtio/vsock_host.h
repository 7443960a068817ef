// The host side of virtio-vsock, in Firecracker's protocol:
//
//  - host-initiated: a client connects to the Unix socket `uds_path` and
//    writes "CONNECT <port>\n" (kMaxConnectLine bytes at the most, nothing
//    after it before the answer); the device then asks the guest, and
//    answers "OK <host port>\n" once it accepts;
//  - guest-initiated: a guest connection to host port P is connected to the
//    Unix socket "<uds_path>_P" (connect()), or refused when nobody listens;
//  - port forwards: TCP listeners on the host whose connections are
//    streams to a guest port (what `snapvm run --publish` sets up).
//
// It accepts and reads; the device decides when a stream may go to the
// guest (Admission) and owns the connections. Not thread-safe: the device
// calls it with its lock held, on its worker thread but for waiting().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "devices/virtio/device_worker.h"
#include "state/host_state.h"

namespace snapvm::virtio::vsock {

inline constexpr size_t kMaxConnectLine = 32;  // "CONNECT 4294967295\n" fits

// A host stream on its way to a guest port.
struct HostStream {
  UniqueFd fd;
  uint32_t guest_port = 0;
  bool reply_ok = false;  // a Unix client, answered "OK <port>" (not a TCP forward)
};

class HostSide {
 public:
  // Listens on `uds_path` (the VM's owner only: whoever connects can talk to
  // every guest port) and on each forward's TCP address, filling in the port
  // the kernel chose (port 0), the address, family, type and guest CID. The
  // listeners join `worker`'s wait set; `worker` must outlive this.
  static Result<std::unique_ptr<HostSide>> create(const std::string& uds_path, uint64_t guest_cid,
                                                  std::vector<state::PortForward>& forwards, DeviceWorker& worker);
  ~HostSide();  // removes the socket file

  // Whether `token` (DeviceWorker::Ready) is one of this side's fds: its
  // tokens carry kinds 2-4 in their top byte, the device may use others.
  static constexpr bool owns(uint64_t token) { return (token >> 56) >= kTokenListener && (token >> 56) <= kTokenPending; }

  // Where host streams may go now: nowhere (no driver: refused), held
  // (until the guest handled a transport reset), or to the guest.
  enum class Admission { kRefuse, kHold, kNow };
  // One of this side's fds polled ready. `connections`: the device's count,
  // which with the clients waiting here stays under kMaxConnections.
  // Returns the streams that go to the guest now, in the order accepted.
  std::vector<HostStream> on_ready(uint64_t token, size_t connections, Admission admission);
  // The clients that said CONNECT and the forwards held back, to go to the
  // guest now (call only when it admits them).
  std::vector<HostStream> take_waiting();
  // How many of those wait.
  size_t waiting() const;

  // A guest-initiated connection to host port `port`: connected to
  // "<uds_path>_<port>", or invalid when nobody listens there.
  UniqueFd connect(uint32_t port) const;

 private:
  static constexpr uint64_t kTokenListener = 2, kTokenForward = 3, kTokenPending = 4;
  struct Pending {
    UniqueFd fd;
    bool reply_ok = true;  // a Unix client (answered "OK <port>"), not a TCP forward
    std::string line;
    bool has_port = false;
    uint32_t port = 0;
  };

  HostSide(std::string uds_path, UniqueFd listener, DeviceWorker& worker)
      : uds_path_(std::move(uds_path)), listener_(std::move(listener)), worker_(worker) {}
  void accept_unix(size_t connections);
  void accept_forward(size_t index, size_t connections, Admission admission, std::vector<HostStream>& out);
  void read_connect_line(int fd);
  void drop_pending(int fd);

  const std::string uds_path_;
  UniqueFd listener_;
  std::vector<std::pair<uint32_t, UniqueFd>> forward_listeners_;  // guest port, TCP listener
  DeviceWorker& worker_;
  std::map<int, std::unique_ptr<Pending>> pending_;  // key: fd; Unix clients before CONNECT, held forwards
};

}  // namespace snapvm::virtio::vsock
