// A byte count shown as it grows, for long steps (a large layer, building
// a filesystem). On a terminal one line is redrawn in place (done / total,
// percent, rate); into a file or pipe a plain line at each quarter, so logs
// stay short; nothing when quiet. Steps smaller than `min_total` are not
// shown at all: they end before anyone could read a meter.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

namespace snapvm {

class ByteProgress {
 public:
  enum class Style { kNone, kInPlace, kLines };
  // kInPlace when `fd` is a terminal, kLines otherwise, kNone when quiet.
  static Style style_for(int fd, bool quiet);

  using Clock = std::function<double()>;  // seconds, from any fixed start

  ByteProgress(std::string label, uint64_t total, Style style, uint64_t min_total = 0, std::FILE* out = stderr,
               Clock clock = {});
  ~ByteProgress();  // finishes if update() or finish() was not the last word
  ByteProgress(const ByteProgress&) = delete;
  ByteProgress& operator=(const ByteProgress&) = delete;

  // `done` of the total so far (at most the total; a smaller value than
  // before is taken as it is). Redraws at most ten times a second.
  void update(uint64_t done);
  // The step ended: the in-place line is cleared (what follows is the
  // step's own summary), a plain line says 100% if none did yet.
  void finish();

  // "12.3 MiB" (B, KiB, MiB, GiB, TiB).
  static std::string bytes_text(uint64_t n);

 private:
  void draw(bool last);

  std::string label_;
  uint64_t total_, done_ = 0;
  Style style_;
  std::FILE* out_;
  Clock clock_;
  double start_, last_draw_ = -1;
  int quarters_shown_ = 0;  // kLines: 25%, 50%, 75%, 100% lines printed so far
  bool drawn_ = false, finished_ = false;
};

}  // namespace snapvm
