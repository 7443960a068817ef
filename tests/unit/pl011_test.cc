// The PL011 console keeps what the guest programmed across a snapshot.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "devices/pl011.h"

namespace snapvm {
namespace {

void w32(Pl011& u, uint64_t off, uint32_t v) { u.mmio_write(off, {reinterpret_cast<uint8_t*>(&v), 4}); }
uint32_t r32(Pl011& u, uint64_t off) {
  uint32_t v = 0;
  u.mmio_read(off, {reinterpret_cast<uint8_t*>(&v), 4});
  return v;
}

TEST(Pl011, RegistersAndInterruptLineSurviveSaveAndRestore) {
  Pl011 before([](std::string_view) {}, [](bool) {});
  w32(before, 0x024, 13);     // IBRD
  w32(before, 0x02c, 0x70);   // LCR_H: 8 bits, FIFO
  w32(before, 0x030, 0x301);  // CR: enabled
  w32(before, 0x038, 0x20);   // IMSC: TX interrupt unmasked
  auto saved = before.save();

  std::vector<bool> levels;
  Pl011 after([](std::string_view) {}, [&](bool level) { levels.push_back(level); });
  ASSERT_TRUE(after.restore(saved));
  EXPECT_EQ(r32(after, 0x024), 13u);
  EXPECT_EQ(r32(after, 0x02c), 0x70u);
  EXPECT_EQ(r32(after, 0x030), 0x301u);
  EXPECT_EQ(r32(after, 0x038), 0x20u) << "interrupt mask lost";
  EXPECT_EQ(r32(after, 0x040), 0x20u) << "masked interrupt status";
  ASSERT_FALSE(levels.empty());
  EXPECT_TRUE(levels.back()) << "the TX interrupt line must be raised again";
}

TEST(Pl011, RefusesARecordOfAnotherShape) {
  Pl011 u([](std::string_view) {}, [](bool) {});
  auto saved = u.save();
  saved.push_back(0);
  EXPECT_FALSE(u.restore(saved));
  EXPECT_FALSE(u.restore({}));
  saved.pop_back();
  saved[0] = 9;  // version
  EXPECT_FALSE(u.restore(saved));
}

}  // namespace
}  // namespace snapvm
