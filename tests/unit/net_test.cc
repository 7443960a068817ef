// virtio-net driven as a Linux guest drives it, against a socket pair that
// carries frames as a tap with IFF_VNET_HDR does (one frame, virtio header
// first, per read and write), well-behaved and hostile.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ctime>
#include <string>

#include "base/unique_fd.h"
#include "devices/virtio/net.h"
#include "mmio_guest.h"

namespace snapvm::virtio {
namespace {

using test::MmioGuest;
using namespace std::chrono_literals;
constexpr uint32_t kRx = 0, kTx = 1;
constexpr uint64_t kMergeable = 1ull << 15;
constexpr uint64_t kRxBuffers = MmioGuest::kData, kTxBuffers = MmioGuest::kData + 0x100000;
const MacAddress kMac = {0x02, 0xfc, 0, 0, 0, 1};

std::string frame_of(size_t bytes, char fill) {
  std::string f(bytes, fill);
  std::memset(f.data(), 0, Net::kHeaderBytes);  // no offload asked
  return f;
}

class NetTest : public ::testing::Test {
 protected:
  void start(uint64_t features) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    ::fcntl(sv[0], F_SETFL, O_NONBLOCK);
    ::fcntl(sv[1], F_SETFL, O_NONBLOCK);
    peer.reset(sv[1]);
    auto n = Net::create(UniqueFd(sv[0]), kMac);
    ASSERT_TRUE(n) << n.error().describe();
    net = n->get();
    guest = std::make_unique<MmioGuest>(std::move(*n), kFeatureVersion1 | features);
  }
  void post_rx(uint64_t index, uint32_t len) {
    guest->add_chain(kRx, {{kRxBuffers + index * 0x10000, len, true}});
  }
  void send(const std::string& frame) {
    ASSERT_EQ(::write(peer.get(), frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
  }
  // The bytes of used receive element i.
  std::string received(uint16_t i) {
    auto [id, len] = guest->used_elem(kRx, i);
    return std::string(reinterpret_cast<char*>(guest->host(guest->desc_addr(kRx, id))), len);
  }

  UniqueFd peer;
  Net* net = nullptr;
  std::unique_ptr<MmioGuest> guest;
};

TEST_F(NetTest, TransmitSendsEachChainAsOneWholeFrame) {
  start(0);
  const std::string header(Net::kHeaderBytes, '\0'), payload = "an ethernet frame's bytes, in two pieces";
  std::memcpy(guest->host(kTxBuffers), header.data(), header.size());
  std::memcpy(guest->host(kTxBuffers + 0x1000), payload.data(), payload.size());
  guest->add_chain(kTx, {{kTxBuffers, Net::kHeaderBytes, false},
                         {kTxBuffers + 0x1000, static_cast<uint32_t>(payload.size()), false}});
  guest->notify(kTx);
  char buf[256];
  ssize_t n = ::read(peer.get(), buf, sizeof buf);
  ASSERT_EQ(n, static_cast<ssize_t>(header.size() + payload.size()));
  EXPECT_EQ(std::string(buf + header.size(), payload.size()), payload);
  EXPECT_EQ(guest->used_idx(kTx), 1);
  EXPECT_EQ(net->counters().tx_frames, 1u);
}

TEST_F(NetTest, TransmitNotifiedThroughItsEventfdIsSentByTheWorker) {
  start(0);
  // What KVM does with the guest's write of 1 to QueueNotify (ioeventfd).
  ASSERT_GE(net->queue_notify_fd(kTx), 0);
  EXPECT_EQ(net->queue_notify_fd(kRx), -1) << "receive buffers are announced through queue_notify";
  const std::string frame = frame_of(300, 'e');
  std::memcpy(guest->host(kTxBuffers), frame.data(), frame.size());
  guest->add_chain(kTx, {{kTxBuffers, static_cast<uint32_t>(frame.size()), false}});
  const uint64_t one = 1;
  ASSERT_EQ(::write(net->queue_notify_fd(kTx), &one, sizeof one), 8);
  ASSERT_TRUE(MmioGuest::wait_for([&] { return guest->used_idx(kTx) == 1; }));
  char buf[512];
  ASSERT_EQ(::read(peer.get(), buf, sizeof buf), static_cast<ssize_t>(frame.size()));
  EXPECT_EQ(std::string(buf, frame.size()), frame);
  // The interrupt follows the used ring's update (the same race as below).
  EXPECT_TRUE(MmioGuest::wait_for([&] { return guest->irqs.load() >= 1; })) << "the driver is told the chain is used";
}

TEST_F(NetTest, AFrameSpansMergeableBuffersAndSaysHowMany) {
  start(kMergeable);
  for (uint64_t i = 0; i < 3; ++i) post_rx(i, 2048);
  guest->notify(kRx);
  const std::string frame = frame_of(5000, 'x');
  send(frame);
  ASSERT_TRUE(MmioGuest::wait_for([&] { return guest->used_idx(kRx) == 3; })) << guest->used_idx(kRx);
  std::string got = received(0) + received(1) + received(2);
  ASSERT_EQ(got.size(), frame.size());
  uint16_t num_buffers;
  std::memcpy(&num_buffers, got.data() + 10, 2);
  EXPECT_EQ(num_buffers, 3);
  EXPECT_EQ(got.substr(Net::kHeaderBytes), frame.substr(Net::kHeaderBytes));
  // The interrupt follows the used ring's update: on a loaded machine the
  // test can read the ring before the device has raised it.
  EXPECT_TRUE(MmioGuest::wait_for([&] { return guest->irqs.load() > 0; })) << "no interrupt for the frame";
}

// A snapshot of a paused VM must find the receive queue as the pause left
// it: a frame that arrives meanwhile stays with the tap until the resume.
TEST_F(NetTest, APausedDeviceLeavesFramesInTheTapUntilResumed) {
  start(0);
  post_rx(0, 4096);
  guest->notify(kRx);
  net->set_paused(true);
  const std::string frame = frame_of(100, 'p');
  send(frame);
  EXPECT_FALSE(MmioGuest::wait_for([&] { return guest->used_idx(kRx) != 0; }, 300ms))
      << "a paused device delivered a frame";
  net->set_paused(false);
  ASSERT_TRUE(MmioGuest::wait_for([&] { return guest->used_idx(kRx) == 1; }));
  EXPECT_EQ(received(0).substr(Net::kHeaderBytes), frame.substr(Net::kHeaderBytes));
}

TEST_F(NetTest, AFrameWaitsForBuffersWithoutUsingThePartOnes) {
  start(kMergeable);
  post_rx(0, 2048);
  guest->notify(kRx);
  const std::string frame = frame_of(5000, 'y');
  send(frame);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(guest->used_idx(kRx), 0) << "a buffer was used for a frame that did not fit yet";
  post_rx(1, 2048);
  post_rx(2, 2048);
  guest->notify(kRx);
  ASSERT_TRUE(MmioGuest::wait_for([&] { return guest->used_idx(kRx) == 3; }));
  EXPECT_EQ((received(0) + received(1) + received(2)).substr(Net::kHeaderBytes), frame.substr(Net::kHeaderBytes));
  EXPECT_EQ(net->counters().rx_dropped, 0u);
}

TEST_F(NetTest, WithoutMergeableBuffersAFrameTooBigForOneIsDroppedAndTheNextDelivered) {
  start(0);
  post_rx(0, 1526);
  guest->notify(kRx);
  send(frame_of(4000, 'z'));
  const std::string small = frame_of(100, 's');
  send(small);
  ASSERT_TRUE(MmioGuest::wait_for([&] { return guest->used_idx(kRx) == 1; }));
  std::string got = received(0);
  EXPECT_EQ(got.substr(Net::kHeaderBytes), small.substr(Net::kHeaderBytes));
  uint16_t num_buffers;
  std::memcpy(&num_buffers, got.data() + 10, 2);
  EXPECT_EQ(num_buffers, 1);
  EXPECT_EQ(net->counters().rx_dropped, 1u);
}

TEST_F(NetTest, HostileTransmitChainsAreDroppedAndTheDeviceGoesOn) {
  start(0);
  // Shorter than the header, longer than any frame, and device-writable.
  guest->add_chain(kTx, {{kTxBuffers, 4, false}});
  guest->add_chain(kTx, {{kTxBuffers, 40000, false}, {kTxBuffers + 40000, 40000, false}});
  guest->add_chain(kTx, {{kTxBuffers, 64, false}, {kTxBuffers + 64, 64, true}});
  const std::string good = frame_of(60, 'g');
  std::memcpy(guest->host(kTxBuffers + 0x20000), good.data(), good.size());
  guest->add_chain(kTx, {{kTxBuffers + 0x20000, static_cast<uint32_t>(good.size()), false}});
  guest->notify(kTx);
  EXPECT_EQ(guest->used_idx(kTx), 4) << "every chain goes back to the driver";
  char buf[128];
  EXPECT_EQ(::read(peer.get(), buf, sizeof buf), static_cast<ssize_t>(good.size()));
  EXPECT_EQ(::read(peer.get(), buf, sizeof buf), -1) << "only the good frame left";
  EXPECT_EQ(net->counters().tx_dropped, 3u);
  EXPECT_EQ(net->counters().tx_frames, 1u);
}

TEST_F(NetTest, AFloodWithNoReceiveBuffersStaysInTheTapNotInTheVmm) {
  start(kMergeable);
  const std::string frame = frame_of(1500, 'f');
  int sent = 0;
  while (sent < 100000 && ::write(peer.get(), frame.data(), frame.size()) > 0) ++sent;
  EXPECT_LT(sent, 100000);
  // The device holds at most one frame (it may take it after the queue
  // first filled): the sender's queue fills and stays full while the guest
  // posts nothing.
  std::this_thread::sleep_for(100ms);
  int more = 0;
  while (more < 10 && ::write(peer.get(), frame.data(), frame.size()) > 0) ++more;
  EXPECT_LE(more, 1);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(::write(peer.get(), frame.data(), frame.size()), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_EQ(net->counters().rx_frames, 0u);
  // Buffers posted: frames flow again.
  for (uint64_t i = 0; i < 8; ++i) post_rx(i, 2048);
  guest->notify(kRx);
  ASSERT_TRUE(MmioGuest::wait_for([&] { return guest->used_idx(kRx) == 8; }));
  EXPECT_EQ(received(0).substr(Net::kHeaderBytes), frame.substr(Net::kHeaderBytes));
}

TEST_F(NetTest, ABackendThatGoesAwayDownsTheLinkAndTheDeviceNeitherSpinsNorStops) {
  start(kMergeable);
  for (uint64_t i = 0; i < 4; ++i) post_rx(i, 2048);
  guest->notify(kRx);
  send(frame_of(100, 'a'));
  ASSERT_TRUE(MmioGuest::wait_for([&] { return guest->used_idx(kRx) == 1; }));
  peer.reset();  // as `ip link del` does to a tap: every read fails from now on
  ASSERT_TRUE(MmioGuest::wait_for([&] { return (guest->r32(0x060) & 2) != 0; })) << "a config-change interrupt";
  uint8_t config[8];
  net->read_config(0, config);
  EXPECT_EQ(config[6], 0) << "link down";
  // A dead backend polls ready forever: the worker must not wake for it.
  timespec before, after;
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &before);
  std::this_thread::sleep_for(300ms);
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &after);
  const double cpu_ms = (after.tv_sec - before.tv_sec) * 1e3 + (after.tv_nsec - before.tv_nsec) / 1e6;
  EXPECT_LT(cpu_ms, 60.0) << "CPU used in 300 ms of a dead backend";
  // The guest's frames go back to it, dropped.
  ::signal(SIGPIPE, SIG_IGN);  // a socket pair's closed end; a tap answers EBADFD
  const std::string frame = frame_of(60, 't');
  std::memcpy(guest->host(kTxBuffers), frame.data(), frame.size());
  guest->add_chain(kTx, {{kTxBuffers, static_cast<uint32_t>(frame.size()), false}});
  guest->notify(kTx);
  EXPECT_EQ(guest->used_idx(kTx), 1);
  EXPECT_EQ(net->counters().tx_dropped, 1u);
}

TEST_F(NetTest, ConfigSpaceHasTheMacAndLinkUp) {
  start(0);
  uint8_t config[8];
  net->read_config(0, config);
  EXPECT_EQ(std::memcmp(config, kMac.data(), 6), 0);
  EXPECT_EQ(config[6], 1) << "VIRTIO_NET_S_LINK_UP";
  auto saved = net->save_specific();
  auto mac = Net::mac_of_saved(saved);
  ASSERT_TRUE(mac);
  EXPECT_EQ(*mac, kMac);
  saved.pop_back();
  EXPECT_FALSE(Net::mac_of_saved(saved));
}

TEST(NetMac, ParsesSixHexBytesAndRefusesTheRest) {
  auto m = parse_mac("02:fc:00:00:00:2a");
  ASSERT_TRUE(m);
  EXPECT_EQ(format_mac(*m), "02:fc:00:00:00:2a");
  for (const char* bad : {"", "02:fc:00:00:00", "02:fc:00:00:00:2a:00", "zz:fc:00:00:00:2a", "01:00:5e:00:00:01",
                          "02-fc-00-00-00-2a", "02:fc:00:00:00:2ax"}) {
    EXPECT_FALSE(parse_mac(bad)) << bad;
  }
  MacAddress r = random_mac();
  EXPECT_EQ(r[0] & 3, 2) << "unicast, locally administered";
}

}  // namespace
}  // namespace snapvm::virtio
