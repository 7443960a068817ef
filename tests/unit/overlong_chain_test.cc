// A guest's chain longer than its queue, every device: the walker once gave
// an indirect table a budget of its own, so a ring's worth of descriptors
// plus a 1024-entry table reached the devices as 1087 buffers, and
// virtio-net's transmit wrote past its 1024-entry iovec on the stack. Each
// device must now see the chain refused as malformed: the queue stops and
// asks the driver for a reset, the device's account counts it, nothing is
// written past a bound, and the VMM goes on.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>

#include "base/unique_fd.h"
#include "devices/virtio/block.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"
#include "mmio_guest.h"
#include "test_util.h"

namespace snapvm::virtio {
namespace {

using test::MmioGuest;
constexpr uint32_t kNeedsReset = 0x40;

struct DeviceCase {
  const char* name;
  std::function<std::unique_ptr<VirtioDevice>(snapvm::test::TempDir&, UniqueFd&)> make;
  uint32_t queue;  // the queue whose consumer gathers the chain
  bool writable;   // whether that consumer takes device-writable buffers
  // Gives a receive queue's consumer something to deliver (the chain is
  // taken only then); returns what must stay open meanwhile.
  std::function<UniqueFd(snapvm::test::TempDir&, UniqueFd& peer)> deliver = nullptr;
};

class OverlongChain : public ::testing::TestWithParam<DeviceCase> {};

TEST_P(OverlongChain, IsRefusedAsMalformedAndTheDeviceGoesOn) {
  const DeviceCase& c = GetParam();
  snapvm::test::TempDir dir;
  UniqueFd peer;
  MmioGuest guest(c.make(dir, peer));
  guest.add_overlong_chain(c.queue, MmioGuest::kData, c.writable);
  guest.notify(c.queue);
  UniqueFd keep = c.deliver ? c.deliver(dir, peer) : UniqueFd();
  // Devices with a worker of their own take the chain there.
  EXPECT_TRUE(MmioGuest::wait_for([&] { return (guest.r32(0x070) & kNeedsReset) != 0; }))
      << c.name << ": the queue should ask for a reset; " << guest.transport().describe();
  const std::string account = guest.transport().describe();
  EXPECT_NE(account.find("1 malformed chains"), std::string::npos) << account;
  // No device offers indirect tables, so the table is where the chain
  // stops (Virtqueue.AChainHoldsAtMostQueueSizeBuffersIndirectTableIncluded
  // shows the budget that holds once a device does).
  EXPECT_NE(account.find("VIRTIO_F_INDIRECT_DESC was not negotiated"), std::string::npos) << account;
  EXPECT_EQ(guest.used_idx(c.queue), 0) << "a malformed chain is never returned as used";

  // The driver resets the device and sets it up again: it works as before
  // (the account keeps the count).
  guest.w32(0x070, 0);
  EXPECT_EQ(guest.r32(0x070), 0u);
  EXPECT_NE(guest.transport().describe().find("1 malformed chains"), std::string::npos)
      << "the account outlives the driver's reset";
}

std::unique_ptr<VirtioDevice> make_net(snapvm::test::TempDir&, UniqueFd& peer) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  ::fcntl(sv[0], F_SETFL, O_NONBLOCK);
  ::fcntl(sv[1], F_SETFL, O_NONBLOCK);
  peer.reset(sv[1]);
  auto n = Net::create(UniqueFd(sv[0]), MacAddress{0x02, 0xfc, 0, 0, 0, 1});
  EXPECT_TRUE(n) << n.error().describe();
  return std::move(*n);
}

std::unique_ptr<VirtioDevice> make_block(snapvm::test::TempDir& dir, UniqueFd&) {
  const std::string path = dir.file("disk.img");
  snapvm::test::write_file(path, std::vector<uint8_t>(64 * 512, 0));
  auto b = Block::open(path, false);
  EXPECT_TRUE(b) << b.error().describe();
  return std::move(*b);
}

std::unique_ptr<VirtioDevice> make_vsock(snapvm::test::TempDir& dir, UniqueFd&) {
  auto v = Vsock::create(3, dir.file("vm.vsock"));
  EXPECT_TRUE(v) << v.error().describe();
  return std::move(*v);
}

UniqueFd frame_from_the_tap(snapvm::test::TempDir&, UniqueFd& peer) {
  std::string frame(Net::kHeaderBytes + 60, 'f');
  std::memset(frame.data(), 0, Net::kHeaderBytes);
  EXPECT_EQ(::write(peer.get(), frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
  return UniqueFd();
}

UniqueFd host_connect(snapvm::test::TempDir& dir, UniqueFd&) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = dir.file("vm.vsock");
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << path;
  const std::string line = "CONNECT 1024\n";
  EXPECT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
  return UniqueFd(fd);
}

INSTANTIATE_TEST_SUITE_P(
    EveryDevice, OverlongChain,
    ::testing::Values(DeviceCase{"net transmit", make_net, 1, false},
                      DeviceCase{"net receive", make_net, 0, true, frame_from_the_tap},
                      DeviceCase{"block", make_block, 0, false},
                      DeviceCase{"rng", [](auto&, auto&) -> std::unique_ptr<VirtioDevice> { return std::make_unique<Rng>(); },
                                 0, true},
                      DeviceCase{"vsock transmit", make_vsock, 1, false}, DeviceCase{"vsock receive", make_vsock, 0, true, host_connect}),
    [](const ::testing::TestParamInfo<DeviceCase>& info) {
      std::string name = info.param.name;
      for (char& ch : name) ch = ch == ' ' ? '_' : ch;
      return name;
    });

}  // namespace
}  // namespace snapvm::virtio
