// The console watch that tells a guest kernel's panic from a reboot
// (vmm/panic_watch.h): fed the console's bytes as the UART hands them on.
#include "vmm/panic_watch.h"

#include <gtest/gtest.h>

#include <string>

namespace snapvm {
namespace {

TEST(PanicWatch, FindsThePanicLineAcrossWritesOfAnySize) {
  const std::string console =
      "[    1.0] Run /init as init process\r\nSNAPVM-GUEST-READY cpus=1\r\n"
      "[   12.3] sysrq: Trigger a crash\r\n[   12.3] Kernel panic - not syncing: sysrq triggered crash\r\n"
      "[   12.4] ---[ end Kernel panic - not syncing: something else ]---\r\n";
  for (size_t chunk : {size_t{1}, size_t{3}, size_t{64}, console.size()}) {
    PanicWatch w;
    for (size_t at = 0; at < console.size(); at += chunk) w.feed(std::string_view(console).substr(at, chunk));
    ASSERT_TRUE(w.panic_line().has_value()) << chunk;
    EXPECT_EQ(*w.panic_line(), "sysrq triggered crash") << chunk;  // the first, whole
  }
}

TEST(PanicWatch, ARebootOrAnUnfinishedLineIsNoPanic) {
  PanicWatch w;
  w.feed("reboot: Restarting system\r\n");
  w.feed("Kernel panic - not syncing: no newline yet");
  EXPECT_FALSE(w.panic_line().has_value());
  w.feed("\n");
  EXPECT_EQ(w.panic_line().value_or(""), "no newline yet");
}

TEST(PanicWatch, TheLineKeepsOnlyPrintableAscii) {
  PanicWatch w;
  w.feed("Kernel panic - not syncing: \x1b[2Jforged\x07 \xff line\n");
  EXPECT_EQ(w.panic_line().value_or(""), "?[2Jforged? ? line");
}

TEST(PanicWatch, AnEndlessLineIsBoundedAndTheNextOneStillCounts) {
  PanicWatch w;
  w.feed(std::string(10 * PanicWatch::kMaxLine, 'x') + "Kernel panic - not syncing: hidden past the limit\n");
  EXPECT_FALSE(w.panic_line().has_value());
  w.feed("Kernel panic - not syncing: seen\n");
  EXPECT_EQ(w.panic_line().value_or(""), "seen");
}

}  // namespace
}  // namespace snapvm
