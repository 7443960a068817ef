// virtio-vsock driven as a Linux guest drives it, with host clients on its
// Unix socket (Firecracker's CONNECT protocol).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

#include "base/unique_fd.h"
#include "devices/virtio/vsock.h"
#include "devices/virtio/vsock_packet.h"
#include "mmio_guest.h"
#include "test_util.h"

namespace snapvm::virtio {
namespace {

using test::MmioGuest;
using namespace std::chrono_literals;
constexpr uint32_t kRx = 0, kTx = 1, kEvent = 2;
constexpr uint64_t kRxBuffers = MmioGuest::kData, kEventBuffers = MmioGuest::kData + 0x100000;

class VsockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto v = Vsock::create(3, uds);
    ASSERT_TRUE(v) << v.error().describe();
    guest = std::make_unique<MmioGuest>(std::move(*v));
    for (uint64_t i = 0; i < 16; ++i) guest->add_chain(kRx, {{kRxBuffers + i * 4096, 4096, true}});
    for (uint64_t i = 0; i < 4; ++i) post_event_buffer();
    guest->notify(kRx);
    guest->notify(kEvent);
  }
  void post_event_buffer() {
    guest->add_chain(kEvent, {{kEventBuffers + 16 * uint64_t(events_posted_++ % 8), 4, true}});
  }
  // A host client that has sent "CONNECT <port>\n".
  UniqueFd connect_client(uint32_t port) { return connect_client(uds, port); }
  static UniqueFd connect_client(const std::string& path, uint32_t port) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    std::string line = "CONNECT " + std::to_string(port) + "\n";
    EXPECT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
    return UniqueFd(fd);
  }
  vsock::Header rx_packet(uint16_t i) {
    auto [id, len] = guest->used_elem(kRx, i);
    EXPECT_GE(len, vsock::kHeaderBytes);
    return vsock::Header::decode(guest->host(guest->desc_addr(kRx, id)));
  }

  snapvm::test::TempDir dir;
  std::string uds = dir.file("vm.vsock");
  std::unique_ptr<MmioGuest> guest;

 private:
  int events_posted_ = 0;
};

TEST_F(VsockTest, HostConnectBecomesAGuestRequest) {
  auto client = connect_client(1024);
  ASSERT_TRUE(MmioGuest::wait_for([&] { return guest->used_idx(kRx) >= 1; }));
  vsock::Header h = rx_packet(0);
  EXPECT_EQ(h.op, vsock::kOpRequest);
  EXPECT_EQ(h.src_cid, vsock::kHostCid);
  EXPECT_EQ(h.dst_cid, 3u);
  EXPECT_EQ(h.dst_port, 1024u);
}

// After a restore the guest gets a transport-reset event that drops its
// sockets. A CONNECT forwarded before the guest handled that event could be
// accepted and then silently torn down by it, leaving the host client
// waiting forever (the hang of the 2 GiB restore benchmark): the device
// holds host connections until the guest re-posts the event buffer.
TEST_F(VsockTest, HostConnectsWaitUntilTheGuestHandledTheResetEvent) {
  guest->transport().device().restored();
  ASSERT_TRUE(MmioGuest::wait_for([&] { return guest->used_idx(kEvent) == 1; }));
  uint32_t event_id = 0xff;
  std::memcpy(&event_id, guest->host(guest->desc_addr(kEvent, guest->used_elem(kEvent, 0).first)), 4);
  EXPECT_EQ(event_id, 0u) << "VIRTIO_VSOCK_EVENT_TRANSPORT_RESET";

  auto client = connect_client(1024);
  EXPECT_FALSE(MmioGuest::wait_for([&] { return guest->used_idx(kRx) >= 1; }, 300ms))
      << "the request reached the guest before it handled the reset";
  // What `snapvm info` shows of a guest that never handles the event: the
  // reset unacknowledged since the driver's index 4, the client waiting.
  std::string stuck = guest->transport().describe();
  EXPECT_NE(stuck.find("queue 2: taken 1, used 1, driver made available 4"), std::string::npos) << stuck;
  EXPECT_NE(stuck.find("transport reset sent, waiting for the driver to re-post its buffer (event queue avail "
                       "index 4 when sent)"),
            std::string::npos)
      << stuck;
  EXPECT_NE(stuck.find("1 host connections waiting for the guest"), std::string::npos) << stuck;

  post_event_buffer();  // what Linux does after handling the event
  guest->notify(kEvent);
  ASSERT_TRUE(MmioGuest::wait_for([&] { return guest->used_idx(kRx) >= 1; }));
  EXPECT_EQ(rx_packet(0).op, vsock::kOpRequest);
  EXPECT_EQ(rx_packet(0).dst_port, 1024u);
  std::string done = guest->transport().describe();
  EXPECT_NE(done.find("vsock: no transport reset outstanding"), std::string::npos) << done;
  EXPECT_NE(done.find("1 connections, 0 host connections waiting"), std::string::npos) << done;
}

// The same through the restore path, for a host client faster than the
// restore (`snapvm exec` run as soon as a clone's socket appears): its
// CONNECT, taken before the device was active, waits for the reset to be
// handled too. (It was once started in the moment between activate() and
// restored(); VirtioMmio.ARestoredDeviceLearnsItBeforeItsQueuesGoLive pins
// the order that closed that window.)
TEST_F(VsockTest, AHostConnectFromBeforeTheRestoreWaitsForTheResetToo) {
  const std::string clone_uds = dir.file("clone.vsock");
  auto clone = Vsock::create(3, clone_uds);
  ASSERT_TRUE(clone) << clone.error().describe();
  Vsock* device = clone->get();
  auto client = connect_client(clone_uds, 1024);
  ASSERT_TRUE(MmioGuest::wait_for(
      [&] { return device->describe().find("1 host connections waiting") != std::string::npos; }))
      << device->describe();
  const uint16_t rx_before = guest->used_idx(kRx), events_before = guest->used_idx(kEvent);

  auto restored = guest->replace_by_restored(std::move(*clone));
  ASSERT_TRUE(restored) << restored.error().describe();
  ASSERT_TRUE(MmioGuest::wait_for([&] { return guest->used_idx(kEvent) == events_before + 1; }))
      << guest->transport().describe();
  EXPECT_FALSE(MmioGuest::wait_for([&] { return guest->used_idx(kRx) != rx_before; }, 300ms))
      << "the request reached the guest before it handled the reset";

  post_event_buffer();
  guest->notify(kEvent);
  ASSERT_TRUE(MmioGuest::wait_for([&] { return guest->used_idx(kRx) != rx_before; }));
  EXPECT_EQ(rx_packet(rx_before).op, vsock::kOpRequest);
  EXPECT_EQ(rx_packet(rx_before).dst_port, 1024u);
}

}  // namespace
}  // namespace snapvm::virtio

namespace snapvm::virtio {
namespace {

// A guest that sends REQUESTs to a host port nobody listens on provokes one
// RST each; if it posts no rx buffers those RSTs used to pile up in host
// memory without bound. Now the device stops taking tx packets once
// kMaxQueuedControlPackets replies wait, and goes on when rx buffers come.
TEST(VsockBounds, ReplyBacklogStopsTxInsteadOfGrowingHostMemory) {
  snapvm::test::TempDir dir;
  auto v = Vsock::create(3, dir.file("vm.vsock"));
  ASSERT_TRUE(v) << v.error().describe();
  MmioGuest guest(std::move(*v));
  vsock::Header h;
  h.src_cid = 3;
  h.dst_cid = vsock::kHostCid;
  h.src_port = 5000;
  h.dst_port = 9;  // no host listener: every request is answered with RST
  h.op = vsock::kOpRequest;
  h.buf_alloc = 4096;
  uint64_t pkt = MmioGuest::kData + 0x180000;
  h.encode(guest.host(pkt));

  const uint16_t batch = 32;  // half the queue, so descriptors are reused only once returned
  uint16_t sent = 0;
  for (int round = 0; round < 40; ++round) {
    for (uint16_t i = 0; i < batch; ++i) guest.add_chain(kTx, {{pkt, vsock::kHeaderBytes, false}});
    sent = static_cast<uint16_t>(sent + batch);
    guest.notify(kTx);
    if (!MmioGuest::wait_for([&] { return guest.used_idx(kTx) == sent; }, 200ms)) break;
  }
  uint16_t taken = guest.used_idx(kTx);
  EXPECT_LT(sent, 40 * batch) << "the device kept taking packets nobody could receive replies to";
  EXPECT_LE(taken, Vsock::kMaxQueuedControlPackets + batch);
  EXPECT_GE(taken, Vsock::kMaxQueuedControlPackets);

  // Rx buffers drain the backlog (RSTs) and the device takes tx again.
  for (uint64_t i = 0; i < 32; ++i) guest.add_chain(kRx, {{kRxBuffers + i * 4096, 4096, true}});
  guest.notify(kRx);
  ASSERT_TRUE(MmioGuest::wait_for([&] { return guest.used_idx(kRx) == 32; }));
  auto [id, len] = guest.used_elem(kRx, 0);
  EXPECT_EQ(vsock::Header::decode(guest.host(guest.desc_addr(kRx, id))).op, vsock::kOpRst);
  EXPECT_TRUE(MmioGuest::wait_for([&] { return guest.used_idx(kTx) > taken; }));
}

}  // namespace
}  // namespace snapvm::virtio
