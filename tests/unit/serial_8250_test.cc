// The 8250 console as Linux's driver drives it: the probe (scratch and
// loopback), transmit with the transmit-empty interrupt, and the registers
// across a snapshot.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "devices/serial_8250.h"

namespace snapvm {
namespace {

void out(Serial8250& u, uint64_t off, uint8_t v) { u.mmio_write(off, {&v, 1}); }
uint8_t in(Serial8250& u, uint64_t off) {
  uint8_t v = 0;
  u.mmio_read(off, {&v, 1});
  return v;
}

TEST(Serial8250, AnswersTheLinuxProbe) {
  Serial8250 u([](std::string_view) {}, [](bool) {});
  out(u, 7, 0xa5);
  EXPECT_EQ(in(u, 7), 0xa5) << "scratch register";
  out(u, 1, 0x0f);
  EXPECT_EQ(in(u, 1), 0x0f) << "IER reads back";
  out(u, 1, 0);
  out(u, 4, 0x10 | 0x0a);  // loopback with RTS and OUT2
  EXPECT_EQ(in(u, 6) & 0xf0, 0x90) << "loopback: RTS->CTS, OUT2->DCD";
  out(u, 4, 0);
  out(u, 2, 0x01);  // FCR: FIFO on
  EXPECT_EQ(in(u, 2) & 0xc0, 0xc0) << "16550A FIFO bits";
  out(u, 3, 0x80);  // DLAB
  out(u, 0, 0x01);
  out(u, 1, 0x00);
  EXPECT_EQ(in(u, 0), 0x01) << "divisor latch";
  out(u, 3, 0x03);
  EXPECT_EQ(in(u, 5) & 0x60, 0x60) << "transmitter empty";
}

TEST(Serial8250, TransmitRaisesAndAcknowledgesTheInterrupt) {
  std::string sent;
  std::vector<bool> levels;
  Serial8250 u([&](std::string_view s) { sent += s; }, [&](bool l) { levels.push_back(l); });
  out(u, 1, 0x02);  // enable THRI: empty already, so it fires at once
  ASSERT_EQ(levels, (std::vector<bool>{true}));
  EXPECT_EQ(in(u, 2) & 0x0f, 0x02) << "IIR names THRI";
  EXPECT_EQ(levels.back(), false) << "reading IIR acknowledged it";
  EXPECT_EQ(in(u, 2) & 0x01, 0x01) << "nothing pending now";
  out(u, 0, 'h');
  out(u, 0, 'i');
  EXPECT_EQ(sent, "hi");
  EXPECT_EQ(levels.back(), true) << "empty again after each byte";
  out(u, 1, 0);
  EXPECT_EQ(levels.back(), false) << "masking clears the line";
}

TEST(Serial8250, RegistersSurviveSaveAndRestore) {
  Serial8250 a([](std::string_view) {}, [](bool) {});
  out(a, 3, 0x1b);
  out(a, 7, 0x42);
  out(a, 2, 0x01);
  out(a, 1, 0x02);  // THRI pending
  auto saved = a.save();
  std::vector<bool> levels;
  Serial8250 b([](std::string_view) {}, [&](bool l) { levels.push_back(l); });
  ASSERT_TRUE(b.restore(saved));
  EXPECT_EQ(in(b, 3), 0x1b);
  EXPECT_EQ(in(b, 7), 0x42);
  ASSERT_FALSE(levels.empty());
  EXPECT_TRUE(levels.back()) << "the pending interrupt is raised again";
  saved.pop_back();
  EXPECT_FALSE(b.restore(saved));
  saved.push_back(0);
  saved[0] = 9;
  EXPECT_FALSE(b.restore(saved)) << "unknown record version";
}

}  // namespace
}  // namespace snapvm
