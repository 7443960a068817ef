// ByteProgress: what a person sees of a long step on a terminal, in a log,
// and with --quiet.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/progress.h"

namespace snapvm {
namespace {

// What the meter wrote, through a memory stream.
class Captured {
 public:
  Captured() : file_(open_memstream(&buf_, &size_)) {}
  ~Captured() {
    std::fclose(file_);
    std::free(buf_);
  }
  std::FILE* file() { return file_; }
  std::string text() {
    std::fflush(file_);
    return std::string(buf_, size_);
  }

 private:
  char* buf_ = nullptr;
  size_t size_ = 0;
  std::FILE* file_;
};

constexpr uint64_t kMiB = 1 << 20;

TEST(ByteProgress, InPlaceRedrawsOneLineAtMostTenTimesASecondThenClearsIt) {
  Captured out;
  double now = 0;
  {
    ByteProgress p("layer 1/2", 100 * kMiB, ByteProgress::Style::kInPlace, 0, out.file(), [&] { return now; });
    now = 1;
    p.update(10 * kMiB);
    now = 1.05;
    p.update(11 * kMiB);  // too soon after the last: not drawn
    now = 2;
    p.update(40 * kMiB);
  }
  const std::string text = out.text();
  EXPECT_EQ(text,
            "\rlayer 1/2: 10.0 MiB / 100.0 MiB (10%), 10.0 MiB/s\x1b[K"
            "\rlayer 1/2: 40.0 MiB / 100.0 MiB (40%), 20.0 MiB/s\x1b[K"
            "\r\x1b[K");
  EXPECT_EQ(text.find('\n'), std::string::npos) << "a terminal's meter adds no lines";
}

TEST(ByteProgress, IntoAFileItWritesALineAtEachQuarter) {
  Captured out;
  double now = 0;
  ByteProgress p("rootfs.ext4", 400, ByteProgress::Style::kLines, 0, out.file(), [&] { return now; });
  for (uint64_t done = 0; done <= 400; done += 20) {
    now += 0.5;
    p.update(done);
  }
  p.finish();
  p.finish();
  EXPECT_EQ(out.text(),
            "rootfs.ext4: 25% (100 B of 400 B), 33 B/s\n"
            "rootfs.ext4: 50% (200 B of 400 B), 36 B/s\n"
            "rootfs.ext4: 75% (300 B of 400 B), 37 B/s\n"
            "rootfs.ext4: 100% (400 B of 400 B), 38 B/s\n");
}

TEST(ByteProgress, AStepThatEndsEarlyStillSaysItIsDone) {
  Captured out;
  {
    ByteProgress p("unpacking", 1000, ByteProgress::Style::kLines, 0, out.file(), [] { return 0.0; });
    p.update(300);
  }
  EXPECT_EQ(out.text(), "unpacking: 25% (300 B of 1000 B)\nunpacking: 100% (1000 B of 1000 B)\n");
}

TEST(ByteProgress, QuietAndSmallStepsShowNothing) {
  Captured out;
  {
    ByteProgress quiet("layer", 100 * kMiB, ByteProgress::style_for(2, /*quiet=*/true), 0, out.file());
    quiet.update(50 * kMiB);
    ByteProgress small("layer", 4 * kMiB, ByteProgress::Style::kLines, 8 * kMiB, out.file());
    small.update(4 * kMiB);
    ByteProgress empty("layer", 0, ByteProgress::Style::kInPlace, 0, out.file());
    empty.update(0);
  }
  EXPECT_EQ(out.text(), "");
}

TEST(ByteProgress, BytesReadAsAPersonWouldWriteThem) {
  EXPECT_EQ(ByteProgress::bytes_text(0), "0 B");
  EXPECT_EQ(ByteProgress::bytes_text(1023), "1023 B");
  EXPECT_EQ(ByteProgress::bytes_text(1536), "1.5 KiB");
  EXPECT_EQ(ByteProgress::bytes_text(3 * kMiB), "3.0 MiB");
  EXPECT_EQ(ByteProgress::bytes_text(5ull << 40), "5.0 TiB");
}

}  // namespace
}  // namespace snapvm
