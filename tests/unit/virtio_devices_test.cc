// virtio-mmio transport with the rng and block devices, driven through
// their registers as a guest driver would.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <atomic>
#include <fstream>
#include <set>
#include <thread>

#include "devices/virtio/block.h"
#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/rng.h"
#include "test_util.h"
#include "virtio_driver.h"

namespace snapvm::virtio {
namespace {

using test::FakeDriver;

// Brings a transport to DRIVER_OK with queue 0 at the FakeDriver's rings.
struct Bench {
  explicit Bench(std::unique_ptr<VirtioDevice> dev, uint64_t features = kFeatureVersion1)
      : driver(8), transport(std::move(dev), driver.mem, [this] { ++irqs; }) {
    w32(0x070, 1 | 2);  // ACKNOWLEDGE | DRIVER
    w32(0x024, 0);
    w32(0x020, uint32_t(features));
    w32(0x024, 1);
    w32(0x020, uint32_t(features >> 32));
    w32(0x070, 1 | 2 | 8);  // FEATURES_OK
    w32(0x030, 0);
    w32(0x038, 8);
    w32(0x080, uint32_t(FakeDriver::kDesc));
    w32(0x090, uint32_t(FakeDriver::kAvail));
    w32(0x0a0, uint32_t(FakeDriver::kUsed));
    w32(0x044, 1);
    w32(0x070, 1 | 2 | 8 | 4);  // DRIVER_OK
  }
  void w32(uint64_t off, uint32_t v) { transport.mmio_write(off, {reinterpret_cast<uint8_t*>(&v), 4}); }
  uint32_t r32(uint64_t off) {
    uint32_t v = 0;
    transport.mmio_read(off, {reinterpret_cast<uint8_t*>(&v), 4});
    return v;
  }
  void notify() { w32(0x050, 0); }

  FakeDriver driver;
  int irqs = 0;
  MmioTransport transport;
};

TEST(VirtioMmio, IdentifiesAndNegotiates) {
  Bench b(std::make_unique<Rng>());
  EXPECT_EQ(b.r32(0x000), 0x74726976u);
  EXPECT_EQ(b.r32(0x004), 2u);
  EXPECT_EQ(b.r32(0x008), 4u);
  EXPECT_EQ(b.r32(0x070) & 8, 8u) << "FEATURES_OK was refused";
  b.w32(0x014, 1);
  EXPECT_EQ(b.r32(0x010), 1u) << "VERSION_1 (feature 32) must be offered";
}

TEST(VirtioMmio, RefusesFeaturesNotOffered) {
  Bench b(std::make_unique<Rng>(), kFeatureVersion1 | (1ull << 9));
  EXPECT_EQ(b.r32(0x070) & 8, 0u);
}

TEST(VirtioMmio, RngFillsBuffersAndInterrupts) {
  Bench b(std::make_unique<Rng>());
  b.driver.add_chain({{0x1000, 64, true}});
  b.notify();
  EXPECT_EQ(b.driver.used_idx(), 1);
  EXPECT_EQ(b.driver.used_elem(0).second, 64u);
  EXPECT_EQ(b.irqs, 1);
  EXPECT_EQ(b.r32(0x060) & 1, 1u);
  std::vector<uint8_t> zero(64, 0);
  EXPECT_NE(std::memcmp(b.driver.host(0x1000), zero.data(), 64), 0);
  b.w32(0x064, 1);
  EXPECT_EQ(b.r32(0x060), 0u);
}

TEST(VirtioMmio, BrokenQueueAsksForReset) {
  Bench b(std::make_unique<Rng>());
  b.driver.add_chain({{FakeDriver::kRamSize + 0x1000, 64, true}});
  b.notify();
  EXPECT_EQ(b.r32(0x070) & 0x40, 0x40u) << "DEVICE_NEEDS_RESET";
  b.w32(0x070, 0);  // the driver resets the device
  EXPECT_EQ(b.r32(0x070), 0u);
  MutexLock lock(b.transport.queues_mutex());
  EXPECT_TRUE(b.transport.queue(0).error().empty());
}

// A driver that sets VIRTIO_F_INDIRECT_DESC (never offered), readies its
// queue, then clears the bit before FEATURES_OK is checked, gets no
// indirect tables: what a queue may use is what the device offered.
TEST(VirtioMmio, IndirectTablesNeedTheDeviceToOfferThem) {
  FakeDriver driver(8);
  MmioTransport t(std::make_unique<Rng>(), driver.mem, [] {});
  auto w32 = [&](uint64_t off, uint32_t v) { t.mmio_write(off, {reinterpret_cast<uint8_t*>(&v), 4}); };
  const uint64_t with_indirect = kFeatureVersion1 | kFeatureIndirectDesc;
  w32(0x070, 1 | 2);
  w32(0x024, 0);
  w32(0x020, uint32_t(with_indirect));
  w32(0x024, 1);
  w32(0x020, uint32_t(with_indirect >> 32));
  w32(0x030, 0);
  w32(0x038, 8);
  w32(0x080, uint32_t(FakeDriver::kDesc));
  w32(0x090, uint32_t(FakeDriver::kAvail));
  w32(0x0a0, uint32_t(FakeDriver::kUsed));
  w32(0x044, 1);  // ready while the bit is set
  w32(0x024, 0);
  w32(0x020, uint32_t(kFeatureVersion1));
  w32(0x070, 1 | 2 | 8);
  w32(0x070, 1 | 2 | 8 | 4);
  driver.add_indirect_chain(0x5000, {{0x1000, 16, true}});
  w32(0x050, 0);
  MutexLock lock(t.queues_mutex());
  EXPECT_NE(t.queue(0).error().find("not negotiated"), std::string::npos) << t.queue(0).error();
}

class BlockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<uint8_t> img(64 * 512);
    for (size_t i = 0; i < img.size(); ++i) img[i] = static_cast<uint8_t>(i * 7);
    snapvm::test::write_file(path, img);
  }
  std::unique_ptr<Bench> open(bool ro) {
    auto blk = Block::open(path, ro);
    EXPECT_TRUE(blk) << blk.error().describe();
    return std::make_unique<Bench>(std::move(*blk), kFeatureVersion1);
  }
  // Issues one request; returns the status byte.
  uint8_t request(Bench& b, uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t data_len, bool data_writable) {
    uint8_t hdr[16] = {};
    std::memcpy(hdr, &type, 4);
    std::memcpy(hdr + 8, &sector, 8);
    std::memcpy(b.driver.host(0x1000), hdr, 16);
    std::vector<FakeDriver::Seg> segs = {{0x1000, 16, false}};
    if (data_len > 0) segs.push_back({data_gpa, data_len, data_writable});
    segs.push_back({0x1100, 1, true});
    *b.driver.host(0x1100) = 0xff;
    b.driver.add_chain(segs);
    b.notify();
    b.driver.recycle();
    return *b.driver.host(0x1100);
  }
  snapvm::test::TempDir dir;
  std::string path = dir.file("disk.img");
};

TEST_F(BlockTest, ReadsWritesAndFlushes) {
  auto b = open(false);
  EXPECT_EQ(b->r32(0x100), 64u) << "capacity in sectors";
  EXPECT_EQ(request(*b, 0, 2, 0x2000, 1024, true), 0);
  EXPECT_EQ(*b->driver.host(0x2000), static_cast<uint8_t>(1024 * 7));
  std::memset(b->driver.host(0x3000), 0xab, 512);
  EXPECT_EQ(request(*b, 1, 63, 0x3000, 512, false), 0);  // the very last sector
  EXPECT_EQ(request(*b, 4, 0, 0, 0, false), 0);
  auto img = snapvm::test::read_file(path);
  EXPECT_EQ(img[63 * 512], 0xab);
  EXPECT_EQ(img[63 * 512 + 511], 0xab);
}

TEST_F(BlockTest, RefusesPastTheEndAndReadOnlyWrites) {
  auto b = open(false);
  EXPECT_EQ(request(*b, 0, 63, 0x2000, 1024, true), 1) << "read across the end";
  EXPECT_EQ(request(*b, 1, 64, 0x3000, 512, false), 1) << "write past the end";
  EXPECT_EQ(request(*b, 0, ~0ull, 0x2000, 512, true), 1) << "sector overflow";
  EXPECT_EQ(request(*b, 99, 0, 0, 0, false), 2) << "unsupported";
  auto ro = open(true);
  EXPECT_EQ(ro->r32(0x010) & (1u << 5), 1u << 5) << "RO feature";
  EXPECT_EQ(request(*ro, 1, 0, 0x3000, 512, false), 1);
  EXPECT_EQ(snapvm::test::read_file(path)[0], 0) << "a read-only disk was written";
}

}  // namespace
}  // namespace snapvm::virtio

namespace snapvm::virtio {
namespace {

TEST(VirtioMmio, SavedStateRoundTripsThroughTheSnapshotCodec) {
  Bench b(std::make_unique<Rng>());
  b.driver.add_chain({{0x1000, 64, true}});
  b.notify();
  state::DeviceState saved = b.transport.save_device(7);
  ASSERT_TRUE(saved.transport);
  EXPECT_EQ(saved.slot, 7u);
  EXPECT_EQ(saved.transport->device_id, 4u);
  EXPECT_EQ(saved.transport->status, 15u);
  ASSERT_EQ(saved.transport->queues.size(), 1u);
  const auto& q = saved.transport->queues[0];
  EXPECT_TRUE(q.ready);
  EXPECT_EQ(q.size, 8);
  EXPECT_EQ(q.desc_addr, FakeDriver::kDesc);
  EXPECT_EQ(q.avail_addr, FakeDriver::kAvail);
  EXPECT_EQ(q.used_addr, FakeDriver::kUsed);
  EXPECT_EQ(q.last_avail_idx, 1);
  EXPECT_EQ(q.next_used_idx, 1);
  ByteWriter w;
  state::encode(w, saved);
  ByteReader r(w.data(), 0, "device");
  EXPECT_EQ(state::decode_device_state(r), saved);
  EXPECT_TRUE(r.ok() && r.at_end());
}

// A device that writes down what the transport tells it.
class RecordingDevice : public VirtioDevice {
 public:
  explicit RecordingDevice(std::vector<std::string>& calls) : calls_(calls) {}
  uint32_t device_id() const override { return 4; }
  uint64_t device_features() const override { return 0; }
  std::vector<uint16_t> queue_max_sizes() const override { return {8}; }
  void activate(Transport&, uint64_t) override { calls_.push_back("activate"); }
  void queue_notify(size_t) override {}
  void reset() override { calls_.push_back("reset"); }
  void restored() override { calls_.push_back("restored"); }

 private:
  std::vector<std::string>& calls_;
};

// A device with its own thread (vsock) acts as soon as it is active: it
// must know it is restored first, or it may start talking to the guest as
// if nothing had happened (a host connection torn down by the reset event
// that follows).
TEST(VirtioMmio, ARestoredDeviceLearnsItBeforeItsQueuesGoLive) {
  std::vector<std::string> first_life, second_life;
  Bench b(std::make_unique<RecordingDevice>(first_life));
  EXPECT_EQ(first_life, std::vector<std::string>{"activate"});
  state::VirtioMmioState saved = b.transport.save();
  MmioTransport restored(std::make_unique<RecordingDevice>(second_life), b.driver.mem, [] {});
  ASSERT_TRUE(restored.restore(saved));
  EXPECT_EQ(second_life, (std::vector<std::string>{"restored", "activate"}));
}

}  // namespace
}  // namespace snapvm::virtio

namespace snapvm::virtio {
namespace {

// Linux kicks a queue outside its lock, so two vCPUs can notify one device
// at the same moment. Each chain must still come back exactly once.
TEST(VirtioMmio, ConcurrentNotificationsReturnEachChainOnce) {
  Bench b(std::make_unique<Rng>());
  uint16_t used_before = 0;
  for (int round = 0; round < 500; ++round) {
    for (int i = 0; i < 8; ++i) b.driver.add_chain({{0x1000 + 0x100 * uint64_t(i), 64, true}});
    std::atomic<int> ready{0};
    auto kick = [&] {
      ++ready;
      while (ready.load() < 2) {
      }
      b.notify();
    };
    std::thread a(kick), c(kick);
    a.join();
    c.join();
    ASSERT_EQ(static_cast<uint16_t>(b.driver.used_idx() - used_before), 8) << "round " << round;
    std::set<uint32_t> heads;
    for (uint16_t i = 0; i < 8; ++i) heads.insert(b.driver.used_elem(static_cast<uint16_t>(used_before + i)).first);
    ASSERT_EQ(heads.size(), 8u) << "a chain came back twice in round " << round;
    used_before = b.driver.used_idx();
    b.driver.recycle();
  }
}

}  // namespace
}  // namespace snapvm::virtio

namespace snapvm::virtio {
namespace {

// The spec forbids changing a queue once the driver is running; a guest
// that tries must not move a ring under a device thread.
TEST(VirtioMmio, QueueRegistersAreIgnoredAfterDriverOk) {
  Bench b(std::make_unique<Rng>());
  auto before = b.transport.save().queues.at(0);
  b.w32(0x030, 0);
  b.w32(0x080, 0x3000);  // QueueDescLow
  b.w32(0x090, 0x4000);  // QueueDriverLow
  b.w32(0x038, 2);       // QueueNum
  b.w32(0x044, 0);       // QueueReady
  auto after = b.transport.save().queues.at(0);
  EXPECT_EQ(after, before);
  // The queue still works where it was.
  b.driver.add_chain({{0x1000, 16, true}});
  b.notify();
  EXPECT_EQ(b.driver.used_idx(), 1);
}

// A vCPU kicks the queue while another resets the device and sets it up
// again: the queue has one owner (the transport's queue lock), so this is
// race-free under ThreadSanitizer and never returns a chain to a reset queue.
TEST(VirtioMmio, NotificationsRacingADeviceResetAreSerialized) {
  Bench b(std::make_unique<Rng>());
  std::atomic<bool> done{false};
  std::thread kicker([&] {
    while (!done.load()) b.notify();
  });
  for (int i = 0; i < 300; ++i) {
    b.w32(0x070, 0);  // reset
    b.w32(0x070, 1 | 2);
    b.w32(0x020, 0);
    b.w32(0x024, 1);
    b.w32(0x020, 1);
    b.w32(0x070, 1 | 2 | 8);
    b.w32(0x030, 0);
    b.w32(0x038, 8);
    b.w32(0x080, uint32_t(FakeDriver::kDesc));
    b.w32(0x090, uint32_t(FakeDriver::kAvail));
    b.w32(0x0a0, uint32_t(FakeDriver::kUsed));
    b.w32(0x044, 1);
    b.w32(0x070, 1 | 2 | 8 | 4);
  }
  done = true;
  kicker.join();
  EXPECT_EQ(b.r32(0x070) & 0x40, 0u) << "the queue broke";
}

}  // namespace
}  // namespace snapvm::virtio

// The worker thread that virtio-net and vsock share (device_worker.h).
#include <sys/eventfd.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <vector>

#include "devices/virtio/device_worker.h"

namespace snapvm::virtio {
namespace {

using namespace std::chrono_literals;

// Records every round; a round may be held (while running) until released.
class RecordingClient : public DeviceWorker::Client {
 public:
  void round(std::span<const DeviceWorker::Ready> ready, bool running) override {
    std::unique_lock lock(mu_);
    for (const auto& r : ready) tokens.push_back(r.token);
    (running ? running_rounds : paused_rounds)++;
    if (running && hold_) {
      in_round_ = true;
      cv_.notify_all();
      cv_.wait(lock, [&] { return !hold_; });
      in_round_ = false;
    }
    cv_.notify_all();
  }
  void hold() {
    std::lock_guard lock(mu_);
    hold_ = true;
  }
  void release() {
    std::lock_guard lock(mu_);
    hold_ = false;
    cv_.notify_all();
  }
  // Waits (up to 5 s) until `done` holds, with the lock held.
  template <typename Pred>
  bool wait(Pred done) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return done(*this); });
  }
  bool in_round() {
    std::lock_guard lock(mu_);
    return in_round_;
  }

  std::vector<uint64_t> tokens;
  int running_rounds = 0, paused_rounds = 0;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false, in_round_ = false;
};

TEST(DeviceWorker, ARoundGetsTheTokensOfReadyFdsAndNeverTheKick) {
  auto w = DeviceWorker::create(4);
  ASSERT_TRUE(w) << w.error().describe();
  UniqueFd ev(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE((*w)->add(ev.get(), EPOLLIN | EPOLLET, 7));  // edge-triggered: nobody drains it
  RecordingClient client;
  (*w)->start(client);
  (*w)->kick();
  ASSERT_TRUE(client.wait([](auto& c) { return c.running_rounds >= 1; }));
  uint64_t one = 1;
  ASSERT_EQ(::write(ev.get(), &one, sizeof one), 8);
  ASSERT_TRUE(client.wait([](auto& c) { return !c.tokens.empty(); }));
  (*w)->stop();
  for (uint64_t t : client.tokens) EXPECT_EQ(t, 7u);
}

// What a snapshot relies on: when set_paused(true) returns, the round that
// was under way has ended, and no round runs the device until it resumes.
TEST(DeviceWorker, PauseWaitsForTheRoundUnderWayAndNoRoundRunsUntilResumed) {
  auto w = DeviceWorker::create(4);
  ASSERT_TRUE(w) << w.error().describe();
  DeviceWorker& worker = **w;
  RecordingClient client;
  client.hold();
  worker.start(client);
  worker.kick();
  ASSERT_TRUE(client.wait([](auto& c) { return c.running_rounds >= 1; }));
  ASSERT_TRUE(client.in_round());

  auto paused = std::async(std::launch::async, [&] { worker.set_paused(true); });
  EXPECT_EQ(paused.wait_for(300ms), std::future_status::timeout) << "set_paused returned during a round";
  EXPECT_TRUE(worker.paused());
  client.release();
  ASSERT_EQ(paused.wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(client.in_round());

  int running_before = 0;
  client.wait([&](auto& c) {
    running_before = c.running_rounds;
    return true;
  });
  for (int i = 0; i < 3; ++i) {
    worker.kick();
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(client.wait([](auto& c) { return c.paused_rounds >= 1; })) << "a paused worker still serves its fds";
  client.wait([&](auto& c) {
    EXPECT_EQ(c.running_rounds, running_before) << "a round ran the device while paused";
    return true;
  });

  worker.set_paused(false);
  EXPECT_FALSE(worker.paused());
  ASSERT_TRUE(client.wait([&](auto& c) { return c.running_rounds > running_before; }));
  worker.stop();
}

TEST(DeviceWorker, StopEndsTheThreadEvenIfNeverKicked) {
  auto w = DeviceWorker::create(1);
  ASSERT_TRUE(w) << w.error().describe();
  RecordingClient client;
  (*w)->start(client);
  auto stopped = std::async(std::launch::async, [&] { (*w)->stop(); });
  ASSERT_EQ(stopped.wait_for(5s), std::future_status::ready);
  (*w)->stop();  // twice is fine (the device's destructor, then the worker's)
}

}  // namespace
}  // namespace snapvm::virtio
