#include "base/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iterator>

#include <fmt/format.h>

namespace snapvm {
namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

ByteProgress::Style ByteProgress::style_for(int fd, bool quiet) {
  if (quiet) return Style::kNone;
  return ::isatty(fd) ? Style::kInPlace : Style::kLines;
}

ByteProgress::ByteProgress(std::string label, uint64_t total, Style style, uint64_t min_total, std::FILE* out,
                           Clock clock)
    : label_(std::move(label)), total_(total), style_(total < min_total || total == 0 ? Style::kNone : style),
      out_(out), clock_(clock ? std::move(clock) : Clock(steady_seconds)), start_(clock_()) {}

ByteProgress::~ByteProgress() { finish(); }

std::string ByteProgress::bytes_text(uint64_t n) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (n < 1024) return fmt::format("{} B", n);
  double v = static_cast<double>(n) / 1024;
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) v /= 1024, ++unit;
  return fmt::format("{:.1f} {}", v, kUnits[unit]);
}

void ByteProgress::update(uint64_t done) {
  if (style_ == Style::kNone || finished_) return;
  done_ = std::min(done, total_);
  draw(false);
}

void ByteProgress::finish() {
  if (finished_) return;
  finished_ = true;
  if (style_ == Style::kInPlace && drawn_) {
    fmt::print(out_, "\r\x1b[K");  // the step's own summary line takes its place
    std::fflush(out_);
  } else if (style_ == Style::kLines && quarters_shown_ < 4) {
    done_ = total_;
    draw(true);
  }
}

void ByteProgress::draw(bool last) {
  const double now = clock_();
  const double elapsed = now - start_;
  const std::string rate = elapsed > 0.05 ? ", " + bytes_text(static_cast<uint64_t>(done_ / elapsed)) + "/s" : "";
  // Rounded down: 100% only when the step is done.
  const uint64_t percent = done_ * 100 / total_;
  if (style_ == Style::kInPlace) {
    // Ten redraws a second are plenty for a person, and cheap for a
    // caller that reports every 64 KiB.
    if (!last && last_draw_ >= 0 && now - last_draw_ < 0.1 && done_ < total_) return;
    last_draw_ = now;
    drawn_ = true;
    fmt::print(out_, "\r{}: {} / {} ({}%){}\x1b[K", label_, bytes_text(done_), bytes_text(total_), percent, rate);
    std::fflush(out_);
    return;
  }
  const int quarters = static_cast<int>(done_ * 4 / total_);
  if (quarters <= quarters_shown_) return;
  quarters_shown_ = quarters;
  fmt::print(out_, "{}: {}% ({} of {}){}\n", label_, quarters * 25, bytes_text(done_), bytes_text(total_), rate);
  std::fflush(out_);
}

}  // namespace snapvm
