// What every benchmark program shares, with or without KVM: its command
// line (the options most of them take), its one-line errors, progress lines
// and step watchdogs, the statistics (medians) and the page-cache dropping
// it measures with, and the printing of tables and of a figure next to its
// limit. A benchmark's main() keeps only what it measures.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

namespace snapvm::bench {

// Prints "PROGRAM: what" on stderr and exits 1.
[[noreturn]] void die(const std::string& program, const std::string& what);
// The same with the name the program's Cli was given.
[[noreturn]] void die(const std::string& what);

// A benchmark's command line: CLI11, named for die(), with adders for the
// options that several benchmarks take under the same name and meaning.
class Cli {
 public:
  Cli(std::string program, const std::string& description);
  CLI::App& app() { return app_; }

  // --kernel and --initrd of the test guest (both required).
  Cli& guest(std::string& kernel, std::string& initrd, const std::string& kernel_help = "guest kernel",
             const std::string& initrd_help = "guest initramfs (with the snapvm agent)");
  // --snapvm: the snapvm binary the benchmark starts.
  Cli& snapvm(std::string& path, const std::string& help = "the snapvm binary");
  // --sizes: guest RAM sizes ("256M", "2G"), comma separated.
  Cli& sizes(std::vector<std::string>& sizes, const std::string& help = "guest RAM sizes, smallest first");
  Cli& cpus(uint32_t& cpus, const std::string& help = "vCPUs per guest");
  Cli& reps(int& reps, const std::string& help);
  Cli& round_trips(int& n, const std::string& help);
  Cli& dir(std::string& dir, const std::string& help = "scratch directory");

  // Parses, or prints help or the parse error and exits as CLI11_PARSE would.
  void parse(int argc, char** argv);

 private:
  CLI::App app_;
};

// The median of `v` (the upper one of an even count).
double median(std::vector<double> v);

// The median of one field over samples.
template <typename Sample>
double median(const std::vector<Sample>& samples, double Sample::*field) {
  std::vector<double> v;
  v.reserve(samples.size());
  for (const auto& s : samples) v.push_back(s.*field);
  return median(std::move(v));
}

// Milliseconds since `t0`.
double ms_since(std::chrono::steady_clock::time_point t0);

// Bytes process `pid` has read through read() and friends (/proc/PID/io
// rchar); 0 if unknown.
uint64_t bytes_read_by(pid_t pid);

// sync, then drops the page cache, dentries and inodes (root; best effort),
// so the next measurement reads from the device, or writes without first
// reclaiming earlier runs' cache.
void drop_caches();

// One progress line on stderr, "[  12.3 s] what", timed from program start,
// so a benchmark killed by a timeout shows the step it was in.
void progress(const std::string& what);

// Names a step that must end within `limit`; if it does not, prints the step
// and exits, instead of hanging until an outer timeout says nothing.
class StepWatchdog {
 public:
  StepWatchdog(std::string step, std::chrono::seconds limit);
  ~StepWatchdog();
  StepWatchdog(const StepWatchdog&) = delete;
  StepWatchdog& operator=(const StepWatchdog&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// "met" if `value` is within `limit`, else "MISSED".
std::string verdict(double value, double limit);

// A figure next to its limit, as the format benchmark lists them:
// "  what  figure   limit  verdict".
void limit_row(const std::string& what, const std::string& figure, const std::string& limit,
               const std::string& verdict);

// A table of fixed-width columns separated by `separator`: right-aligned,
// or left-aligned where the width is negative. A cell longer than its column
// is printed whole.
class Table {
 public:
  explicit Table(std::vector<int> widths, std::string separator = " ");
  // One line of cells (as many as columns, or fewer), then `tail`.
  void row(const std::vector<std::string>& cells, const std::string& tail = "") const;

 private:
  std::vector<int> widths_;
  std::string separator_;
};

// `value` with `decimals` digits after the point, for a Table cell.
std::string fixed(double value, int decimals);

// The restore time `snapvm restore --json-timings` reports on stderr in
// its JSON line ({"restored": FILE, "total_ms": X, ...}), found in
// `output`; nullopt if the line is not there or is not such an object.
std::optional<double> restored_in_ms(const std::string& output);
// The start of that line: `snapvm restore --json-timings` prints it once
// the machine is restored, before its vCPUs start.
inline constexpr const char* kRestoredLine = "{\"restored\":";

}  // namespace snapvm::bench
