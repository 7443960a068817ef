// The split virtqueue against well-behaved and hostile drivers.
#include "devices/virtio/virtqueue.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "virtio_driver.h"

namespace snapvm::virtio {
namespace {

using test::FakeDriver;

TEST(Virtqueue, PopsChainsInOrderAndPublishesUsed) {
  FakeDriver d(16);
  d.add_chain({{0x1000, 10, false}, {0x2000, 20, true}});
  d.add_chain({{0x3000, 30, true}});
  auto c1 = d.queue.pop(d.mem);
  ASSERT_TRUE(c1);
  EXPECT_EQ(c1->readable.size(), 1u);
  EXPECT_EQ(c1->writable.size(), 1u);
  EXPECT_EQ(c1->readable_bytes(), 10u);
  EXPECT_EQ(c1->writable_bytes(), 20u);
  EXPECT_EQ(c1->readable[0].data, d.host(0x1000));
  auto c2 = d.queue.pop(d.mem);
  ASSERT_TRUE(c2);
  EXPECT_FALSE(d.queue.pop(d.mem));
  d.queue.push_used(d.mem, *c2, 7);
  d.queue.push_used(d.mem, *c1, 3);
  EXPECT_EQ(d.used_idx(), 2);
  EXPECT_EQ(d.used_elem(0), std::make_pair(uint32_t{c2->head}, uint32_t{7}));
  EXPECT_EQ(d.used_elem(1), std::make_pair(uint32_t{c1->head}, uint32_t{3}));
  EXPECT_TRUE(d.queue.error().empty());
}

TEST(Virtqueue, ScatterGatherCrossesBufferBoundaries) {
  FakeDriver d(8);
  d.write_guest(0x1000, "hello ");
  d.write_guest(0x1100, "world");
  d.add_chain({{0x1000, 6, false}, {0x1100, 5, false}, {0x2000, 4, true}, {0x2100, 8, true}});
  auto c = d.queue.pop(d.mem);
  ASSERT_TRUE(c);
  char buf[11] = {};
  EXPECT_EQ(c->read(0, {reinterpret_cast<uint8_t*>(buf), 11}), 11u);
  EXPECT_EQ(std::string(buf, 11), "hello world");
  const char* out = "0123456789AB";
  EXPECT_EQ(c->write(2, {reinterpret_cast<const uint8_t*>(out), 10}), 10u);
  EXPECT_EQ(std::memcmp(d.host(0x2002), "01", 2), 0);
  EXPECT_EQ(std::memcmp(d.host(0x2100), "23456789", 8), 0);
}

TEST(Virtqueue, IndirectTablesWorkOnceNegotiated) {
  FakeDriver d(8);
  d.queue.set_indirect_allowed(true);
  d.add_indirect_chain(0x5000, {{0x1000, 16, false}, {0x2000, 32, true}});
  auto c = d.queue.pop(d.mem);
  ASSERT_TRUE(c) << d.queue.error();
  EXPECT_EQ(c->readable_bytes(), 16u);
  EXPECT_EQ(c->writable_bytes(), 32u);
}

TEST(Virtqueue, HostileDescriptorsBreakOnlyTheQueue) {
  struct Case {
    const char* name;
    void (*setup)(FakeDriver&);
    const char* expect;
  } cases[] = {
      {"buffer outside RAM", [](FakeDriver& d) { d.add_chain({{FakeDriver::kRamSize - 8, 64, false}}); }, "outside guest RAM"},
      {"address wraps", [](FakeDriver& d) { d.add_chain({{~0ull - 4, 64, false}}); }, "outside guest RAM"},
      {"next out of range", [](FakeDriver& d) { d.add_raw_chain({{0x1000, 8, 1 /*NEXT*/, 200}}); }, "out of range"},
      {"loop", [](FakeDriver& d) { d.add_raw_chain({{0x1000, 8, 1, 1}, {0x1000, 8, 1, 0}}); }, "loops"},
      {"readable after writable", [](FakeDriver& d) { d.add_chain({{0x1000, 8, true}, {0x2000, 8, false}}); }, "after a writable"},
      {"head out of range", [](FakeDriver& d) { d.push_avail(999); }, "out of range"},
      {"avail index jump", [](FakeDriver& d) { d.set_avail_idx(100); }, "ahead"},
      {"nested indirect", [](FakeDriver& d) { d.add_nested_indirect(); }, "nested"},
      {"indirect table size", [](FakeDriver& d) { d.add_raw_chain({{0x5000, 17, 4 /*INDIRECT*/, 0}}); }, "indirect table"},
  };
  for (const auto& c : cases) {
    FakeDriver d(8);
    d.queue.set_indirect_allowed(true);  // the cases of indirect tables
    c.setup(d);
    EXPECT_FALSE(d.queue.pop(d.mem)) << c.name;
    EXPECT_NE(d.queue.error().find(c.expect), std::string::npos) << c.name << ": " << d.queue.error();
    EXPECT_FALSE(d.queue.ready()) << c.name;
    // Once broken, it stays quiet: nothing more is popped or published.
    d.add_chain({{0x1000, 8, false}});
    EXPECT_FALSE(d.queue.pop(d.mem)) << c.name;
    d.queue.push_used(d.mem, Chain{}, 1);
    EXPECT_EQ(d.used_idx(), 0) << c.name;
  }
}

TEST(Virtqueue, AnIndirectTableIsMalformedUnlessNegotiated) {
  FakeDriver d(8);
  d.add_indirect_chain(0x5000, {{0x1000, 16, false}});
  EXPECT_FALSE(d.queue.pop(d.mem));
  EXPECT_NE(d.queue.error().find("not negotiated"), std::string::npos) << d.queue.error();
  EXPECT_EQ(d.queue.malformed_chains(), 1u);
  // A driver reset forgets what was negotiated, and keeps the count.
  d.queue.set_indirect_allowed(true);
  d.queue.reset();
  d.queue.config() = {.max_size = 256, .size = 8, .ready = true, .desc_addr = FakeDriver::kDesc,
                      .avail_addr = FakeDriver::kAvail, .used_addr = FakeDriver::kUsed};
  ASSERT_TRUE(d.queue.activate(d.mem));
  d.set_avail_idx(0);
  d.recycle();
  d.add_indirect_chain(0x5000, {{0x1000, 16, false}});
  EXPECT_FALSE(d.queue.pop(d.mem));
  EXPECT_EQ(d.queue.malformed_chains(), 2u);
}

// One budget for the whole chain: the queue's size, however the chain is
// split between the ring and an indirect table.
TEST(Virtqueue, AChainHoldsAtMostQueueSizeBuffersIndirectTableIncluded) {
  {
    FakeDriver d(8);
    std::vector<FakeDriver::Seg> eight(8, {0x1000, 16, false});
    d.add_chain(eight);
    auto c = d.queue.pop(d.mem);
    ASSERT_TRUE(c) << d.queue.error();
    EXPECT_EQ(c->readable.size(), 8u) << "a chain as long as the queue is well formed";
  }
  {
    // Seven in the ring, then a table of eight: 7 + 1 + 8 descriptors.
    FakeDriver d(8);
    d.queue.set_indirect_allowed(true);
    for (uint16_t i = 0; i < 8; ++i) {
      d.write_desc(0x5000, i, {0x1000, 16, static_cast<uint16_t>(i + 1 < 8 ? 1 : 0), static_cast<uint16_t>(i + 1)});
    }
    std::vector<FakeDriver::RawDesc> ring;
    for (uint16_t i = 0; i < 7; ++i) ring.push_back({0x1000, 16, 1, static_cast<uint16_t>(i + 1)});
    ring.push_back({0x5000, 8 * 16, 4, 0});
    d.add_raw_chain(ring);
    EXPECT_FALSE(d.queue.pop(d.mem));
    EXPECT_NE(d.queue.error().find("longer than the queue"), std::string::npos) << d.queue.error();
    EXPECT_EQ(d.queue.malformed_chains(), 1u);
  }
  {
    // A table alone may not hold more than the queue either.
    FakeDriver d(8);
    d.queue.set_indirect_allowed(true);
    std::vector<FakeDriver::Seg> nine(9, {0x1000, 16, false});
    d.add_indirect_chain(0x5000, nine);
    EXPECT_FALSE(d.queue.pop(d.mem));
    EXPECT_NE(d.queue.error().find("longer than the queue"), std::string::npos) << d.queue.error();
  }
}

TEST(Virtqueue, ActivationChecksSizeAndRings) {
  FakeDriver ok(8);
  EXPECT_TRUE(ok.queue.ready());
  Virtqueue q(256);
  q.config().size = 3;  // not a power of two
  q.config().ready = true;
  EXPECT_FALSE(q.activate(ok.mem));
  Virtqueue q2(256);
  q2.config().size = 256;
  q2.config().desc_addr = FakeDriver::kRamSize;  // outside RAM
  q2.config().ready = true;
  EXPECT_FALSE(q2.activate(ok.mem));
  EXPECT_NE(q2.error().find("outside"), std::string::npos);
}

TEST(Virtqueue, IndicesWrapAround) {
  FakeDriver d(4);
  for (int round = 0; round < 70000; ++round) {
    d.add_chain({{0x1000, 8, false}});
    auto c = d.queue.pop(d.mem);
    ASSERT_TRUE(c) << "round " << round << ": " << d.queue.error();
    d.queue.push_used(d.mem, *c, 0);
    d.recycle();
  }
  EXPECT_TRUE(d.queue.error().empty());
}

}  // namespace
}  // namespace snapvm::virtio

namespace snapvm::virtio {
namespace {

std::vector<uint64_t> drained_pages(AtomicBitmap& bits) {
  std::vector<uint64_t> words(bits.words(), 0), pages;
  bits.drain_into(words);
  for (uint64_t p = 0; p < bits.bits(); ++p) {
    if ((words[p / 64] >> (p % 64)) & 1) pages.push_back(p);
  }
  return pages;
}

// KVM's dirty log never sees what the VMM writes into guest memory, so the
// queue must mark it: every writable buffer of a returned chain and the used
// ring, and nothing the device only read.
TEST(Virtqueue, ReturningAChainMarksWhatTheVmmWroteForDirtyTracking) {
  test::FakeDriver d(16);
  AtomicBitmap dirty(test::FakeDriver::kRamSize / GuestMemory::kDirtyPageBytes);
  d.mem = GuestMemory({{0, {d.ram.data(), d.ram.size()}, &dirty}});
  d.add_chain({{0x10000, 100, false}, {0x20ff0, 0x20, true}, {0x30000, 0x2001, true}});
  auto c = d.queue.pop(d.mem);
  ASSERT_TRUE(c);
  EXPECT_TRUE(drained_pages(dirty).empty()) << "popping writes nothing";
  d.queue.push_used(d.mem, *c, 0x21);
  // 0x20ff0+0x20 spans pages 0x20 and 0x21; 0x30000+0x2001 spans 0x30..0x32;
  // the used ring is page 0x82. Page 0x10 was only read.
  EXPECT_EQ(drained_pages(dirty), (std::vector<uint64_t>{0x20, 0x21, 0x30, 0x31, 0x32, 0x82}));
  EXPECT_TRUE(drained_pages(dirty).empty()) << "draining clears";
  ASSERT_TRUE(d.mem.write(0x45ffe, "abcd", 4));
  EXPECT_EQ(drained_pages(dirty), (std::vector<uint64_t>{0x45, 0x46}));
}

}  // namespace
}  // namespace snapvm::virtio
