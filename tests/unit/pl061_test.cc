// The PL061 GPIO as Linux's pl061 and gpio-keys drivers program it: a
// button press and release each raise the interrupt, the guest clears it,
// reads the level, and all of it survives a snapshot.
#include <gtest/gtest.h>

#include <vector>

#include "devices/pl061.h"

namespace snapvm {
namespace {

constexpr uint64_t kDir = 0x400, kIs = 0x404, kIbe = 0x408, kIev = 0x40c, kIe = 0x410, kRis = 0x414, kMis = 0x418,
                   kIc = 0x41c;
constexpr uint32_t kButton = 3;
constexpr uint8_t kBit = 1u << kButton;

void w8(Pl061& g, uint64_t off, uint8_t v) { g.mmio_write(off, {&v, 1}); }
uint8_t r8(Pl061& g, uint64_t off) {
  uint8_t v = 0;
  g.mmio_read(off, {&v, 1});
  return v;
}
// GPIODATA through the address mask of one line, as gpiod_get_value reads it.
bool level(Pl061& g, uint32_t line) { return r8(g, (1u << line) << 2) != 0; }

// What the driver writes for an input line with a both-edges interrupt.
void program_both_edges(Pl061& g) {
  w8(g, kDir, 0);
  w8(g, kIs, 0);
  w8(g, kIbe, kBit);
  w8(g, kIe, kBit);
}

TEST(Pl061, PressAndReleaseEachInterruptUntilTheGuestClears) {
  std::vector<bool> irq;
  Pl061 g([&](bool l) { irq.push_back(l); });
  program_both_edges(g);
  EXPECT_TRUE(irq.empty());
  EXPECT_FALSE(level(g, kButton));

  g.set_input(kButton, true);
  ASSERT_EQ(irq, std::vector<bool>{true});
  EXPECT_EQ(r8(g, kMis), kBit);
  EXPECT_FALSE(g.guest_saw_input(kButton));
  EXPECT_EQ(r8(g, (1u << 2) << 2), 0) << "another line's mask hides the button";
  EXPECT_FALSE(g.guest_saw_input(kButton)) << "reading another line is not seeing this one";
  EXPECT_TRUE(level(g, kButton));
  EXPECT_TRUE(g.guest_saw_input(kButton));
  EXPECT_EQ(r8(g, 0x3fc), kBit) << "all-lines data read";
  w8(g, kIc, kBit);
  EXPECT_EQ(irq, (std::vector<bool>{true, false}));
  EXPECT_EQ(r8(g, kRis), 0);

  g.set_input(kButton, false);
  EXPECT_EQ(irq, (std::vector<bool>{true, false, true}));
  EXPECT_FALSE(level(g, kButton));
  w8(g, kIc, kBit);
  EXPECT_EQ(irq.back(), false);
}

TEST(Pl061, EdgeSenseAndMaskAreHonoured) {
  std::vector<bool> irq;
  Pl061 g([&](bool l) { irq.push_back(l); });
  w8(g, kIev, kBit);  // rising edges only
  w8(g, kIe, 0);      // masked
  g.set_input(kButton, true);
  EXPECT_TRUE(irq.empty()) << "a masked line must not interrupt";
  EXPECT_EQ(r8(g, kRis), kBit) << "but the raw status latches";
  w8(g, kIc, kBit);
  w8(g, kIe, kBit);
  g.set_input(kButton, false);  // a falling edge: not the programmed sense
  EXPECT_TRUE(irq.empty());
  g.set_input(kButton, true);
  EXPECT_EQ(irq, std::vector<bool>{true});
}

TEST(Pl061, LevelSensitiveLinesFollowTheLevelAndCannotBeCleared) {
  std::vector<bool> irq;
  Pl061 g([&](bool l) { irq.push_back(l); });
  w8(g, kIs, kBit);
  w8(g, kIev, kBit);  // high level
  w8(g, kIe, kBit);
  g.set_input(kButton, true);
  EXPECT_EQ(irq, std::vector<bool>{true});
  w8(g, kIc, kBit);
  EXPECT_EQ(irq, std::vector<bool>{true}) << "the level still stands";
  g.set_input(kButton, false);
  EXPECT_EQ(irq, (std::vector<bool>{true, false}));
}

TEST(Pl061, OutputLinesTakeMaskedWritesAndInputsIgnoreThem) {
  Pl061 g([](bool) {});
  w8(g, kDir, 0x01);             // line 0 output
  w8(g, 0x3fc, 0xff);            // write all lines
  EXPECT_EQ(r8(g, 0x3fc), 0x01);  // only the output took it
  w8(g, (0x01u) << 2, 0x00);     // masked write of line 0
  EXPECT_EQ(r8(g, 0x3fc), 0x00);
  EXPECT_EQ(r8(g, 0xfe0), 0x61) << "PeriphID0 names a PL061";
  EXPECT_EQ(r8(g, 0xffc), 0xb1) << "PrimeCell ID";
}

TEST(Pl061, ProgrammingAndAPendingPressSurviveSaveAndRestore) {
  Pl061 before([](bool) {});
  program_both_edges(before);
  before.set_input(kButton, true);  // pressed, not yet acknowledged
  auto saved = before.save();

  std::vector<bool> irq;
  Pl061 after([&](bool l) { irq.push_back(l); });
  ASSERT_TRUE(after.restore(saved));
  EXPECT_EQ(irq, std::vector<bool>{true}) << "the pending interrupt must be raised again";
  EXPECT_EQ(r8(after, kIbe), kBit);
  EXPECT_TRUE(level(after, kButton));
  w8(after, kIc, kBit);
  after.set_input(kButton, false);
  EXPECT_EQ(irq, (std::vector<bool>{true, false, true})) << "the release interrupts as programmed";

  saved.pop_back();
  EXPECT_FALSE(after.restore(saved));
  std::vector<uint8_t> wrong_version = before.save();
  wrong_version[0] = 9;
  EXPECT_FALSE(after.restore(wrong_version));
}

}  // namespace
}  // namespace snapvm
