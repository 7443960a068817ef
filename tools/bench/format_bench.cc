// snapvm-bench-format: what the snapshot format costs, next to the physical
// limits it chases, measured in the same run on the same machine.
//
//   memory read bandwidth         <- limit for the zero scan
//   filesystem write bandwidth    <- limit for the data bytes of a full write
//   full write time               <- reference for the diff write (target 5%)
//   metadata load, copy-on-write map: must not grow with RAM size
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "base/checksum.h"
#include "base/file_io.h"
#include "base/mapped_region.h"
#include "base/parallel.h"
#include "base/units.h"
#include "snapshot/diff_writer.h"
#include "snapshot/reader.h"
#include "snapshot/writer.h"
#include "state/snapshot_state.h"
#include "tools/bench/harness.h"
#include "tools/common/sample_state.h"

namespace snapvm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = format::kPageSize;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
double gbps(uint64_t bytes, double secs) { return secs > 0 ? bytes / secs / 1e9 : 0; }

template <typename T>
T die_on_error(Result<T> r, const char* what) {
  if (!r) bench::die(fmt::format("{}: {}", what, r.error().describe()));
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}


std::string fs_name(const std::string& dir) {
  struct statfs st {};
  if (::statfs(dir.c_str(), &st) != 0) return "?";
  switch (static_cast<unsigned long>(st.f_type)) {
    case 0x58465342: return "xfs";
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs";
    case 0x9123683E: return "btrfs";
  }
  return fmt::format("fs {:#x}", static_cast<unsigned long>(st.f_type));
}

// Every timed write starts from the same memory state (bench::drop_caches):
// earlier runs' page cache would otherwise have to be reclaimed inside the
// next measurement.
using bench::drop_caches;

// Memory read bandwidth with `threads` readers over a populated buffer: the
// ceiling for any pass over guest RAM.
double memory_read_gbps(std::span<const uint8_t> buf, unsigned threads) {
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::atomic<uint64_t> sink{0};
    uint64_t chunk = buf.size() / threads / 64 * 64;
    auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const uint64_t* p = reinterpret_cast<const uint64_t*>(buf.data() + t * chunk);
        uint64_t a = 0, b = 0, c = 0, d = 0;
        for (uint64_t i = 0; i < chunk / 8; i += 4) {
          a += p[i];
          b ^= p[i + 1];
          c += p[i + 2];
          d ^= p[i + 3];
        }
        sink += a + b + c + d;
      });
    }
    for (auto& th : pool) th.join();
    best = std::max(best, gbps(chunk * threads, since(t0)));
  }
  return best;
}

// Sequential write bandwidth of the filesystem, fsync included: the same
// pwrite pattern as the snapshot writer, with the same thread count.
double fs_write_gbps(const std::string& dir, std::span<const uint8_t> data, unsigned threads) {
  double best = 0;
  for (int rep = 0; rep < 2; ++rep) {
    drop_caches();
    std::string path = dir + "/write-bandwidth.tmp";
    auto fd = die_on_error(open_file(path, O_RDWR | O_CREAT | O_TRUNC, 0600), "open");
    constexpr uint64_t kChunk = 1 << 20;
    uint64_t chunks = data.size() / kChunk;
    auto t0 = Clock::now();
    die_on_error(parallel_for(chunks, threads, [&](uint64_t c) -> Status {
      return pwrite_all(fd.get(), data.subspan(c * kChunk, kChunk), c * kChunk);
    }), "write");
    ::fsync(fd.get());
    best = std::max(best, gbps(chunks * kChunk, since(t0)));
    ::unlink(path.c_str());
  }
  return best;
}

// Random 4 KiB writes per second, fsync included: the limit for RAM whose
// data pages are scattered, where every run of pages is one I/O.
double fs_random_iops(const std::string& dir, unsigned threads) {
  std::string path = dir + "/iops.tmp";
  auto fd = die_on_error(open_file(path, O_RDWR | O_CREAT | O_TRUNC, 0600), "open");
  constexpr uint64_t kWrites = 8192, kSpan = 1ull << 30;
  std::vector<uint8_t> page(kPage, 0xa5);
  auto t0 = Clock::now();
  die_on_error(parallel_for(kWrites, threads, [&](uint64_t i) -> Status {
    uint64_t off = sample::mix64(i) % (kSpan / kPage) * kPage;
    return pwrite_all(fd.get(), page, off);
  }), "random write");
  ::fsync(fd.get());
  double secs = since(t0);
  ::unlink(path.c_str());
  return kWrites / secs;
}

double median_us(std::vector<double> v) { return bench::median(std::move(v)) * 1e6; }

// A figure next to its limit.
const auto row = bench::limit_row;

std::string pass(bool ok) { return ok ? "ok" : "MISSED"; }

struct Config {
  std::vector<uint64_t> sizes;
  std::vector<double> densities;
  std::vector<std::string> patterns;
  std::string dir;
  unsigned threads;
};

struct Limits {
  double mem_gbps;
  double write_gbps;
  double iops;
};

// Clustered data and dirty pages come in runs of this many pages (256 KiB).
constexpr uint64_t kClusterPages = 64;

void bench_one(const Config& cfg, uint64_t size, double density, const std::string& pattern, const Limits& lim) {
  const double mem_gbps = lim.mem_gbps, write_gbps = lim.write_gbps;
  const uint64_t cluster = pattern == "clustered" ? kClusterPages : 1;
  fmt::print("\nRAM {} GiB, {:.0f}% of pages non-zero, {}\n", static_cast<double>(size) / (1ull << 30), density * 100,
             pattern == "clustered" ? "data in 256 KiB runs" : "data pages scattered one by one (worst case)");
  auto ram = die_on_error(MappedRegion::anonymous_huge(size), "allocate RAM");  // as a VMM backs guest RAM
  sample::fill_ram(ram.span(), density, 42, cluster);
  RamExtent extent{sample::kRamBase, size};
  auto st = sample::make_state(4, {&extent, 1});
  auto contents = state::to_contents(st);
  RamSource src{sample::kRamBase, ram.span()};
  WriteOptions opt{cfg.threads, {}};
  std::string full = cfg.dir + "/full.snap", compact = cfg.dir + "/compact.snap", diff = cfg.dir + "/diff.snap";

  // Zero scan alone: the pass every writer makes over RAM.
  uint64_t pages = size / kPage;
  std::atomic<uint64_t> nonzero{0}, runs{0};
  auto t0 = Clock::now();
  die_on_error(parallel_for((pages + 2047) / 2048, cfg.threads, [&](uint64_t u) -> Status {
    uint64_t n = 0, r = 0, after_data = UINT64_MAX;
    for (uint64_t p = u * 2048; p < std::min(pages, (u + 1) * 2048); ++p) {
      if (is_all_zero({ram.data() + p * kPage, kPage})) continue;
      ++n;
      // One write per run of data pages, after the writer merges short gaps.
      if (after_data == UINT64_MAX || p - after_data > WriteOptions{}.merge_gap_pages) ++r;
      after_data = p + 1;
    }
    nonzero += n;
    runs += r;
    return {};
  }), "scan");
  double scan = since(t0);
  double scan_gbps = gbps(size, scan);
  // A data page ends its scan at its first bytes, so only zero pages are read whole.
  uint64_t scanned = (pages - nonzero.load()) * kPage;
  double scan_read_gbps = gbps(scanned, scan);
  row("zero scan", fmt::format("{:.3f} s, {:.1f} GB/s", scan, scan_gbps),
      fmt::format("memory read {:.1f} GB/s", mem_gbps),
      density < 0.5 ? fmt::format("{:.0f}% of limit (target 50%) {}", 100 * scan_read_gbps / mem_gbps,
                                  pass(scan_read_gbps >= 0.5 * mem_gbps))
                    : "data pages exit early");

  // Best of two, as for the bandwidth probes: the first write into a fresh
  // filesystem region also pays for whatever the layers below allocate.
  WriteStats fs;
  double full_s = 1e30;
  for (int rep = 0; rep < 2; ++rep) {
    drop_caches();
    t0 = Clock::now();
    fs = die_on_error(write_full(full, contents, {&src, 1}, opt), "full write");
    full_s = std::min(full_s, since(t0));
  }
  double full_gbps = gbps(fs.data_bytes, full_s);
  row("full write (sparse)", fmt::format("{:.3f} s, {:.2f} GB/s data", full_s, full_gbps),
      fmt::format("fs write {:.2f} GB/s", write_gbps),
      fmt::format("{:.0f}% of limit (target 70%) {}", 100 * full_gbps / write_gbps, pass(full_gbps >= 0.7 * write_gbps)));
  // A sparse write can be no faster than the slower of its two passes:
  // reading all RAM at memory speed and writing its data at disk speed.
  // A sparse write can be no faster than the slowest of reading all RAM at
  // memory speed, writing its data at sequential speed, and issuing one
  // write per run of data pages at the filesystem's random-write rate.
  double ideal = std::max({static_cast<double>(size) / (mem_gbps * 1e9),
                           static_cast<double>(fs.written_bytes) / (write_gbps * 1e9), runs.load() / lim.iops});
  row("  same, against all limits", fmt::format("ideal {:.3f} s", ideal),
      fmt::format("{} runs of data pages", runs.load()), fmt::format("{:.0f}% of ideal", 100 * ideal / full_s));

  drop_caches();
  t0 = Clock::now();
  auto captured = die_on_error(capture_compact({&src, 1}, cfg.threads), "compact capture");
  double cap_s = since(t0);
  t0 = Clock::now();
  die_on_error(write_compact(compact, contents, captured, opt), "compact write");
  double cw_s = since(t0);
  captured = {};
  ::unlink(compact.c_str());
  row("compact capture + write", fmt::format("{:.3f} s + {:.3f} s", cap_s, cw_s),
      fmt::format("guest paused only {:.0f}% of full", 100 * cap_s / full_s), "");

  // 1% of pages dirtied at random, as a guest's scattered writes would be.
  DirtyBitmap dirty(pages);
  const uint64_t dirty_run = pattern == "clustered" ? 16 : 1;
  for (uint64_t i = 0; dirty.count() < std::max<uint64_t>(1, pages / 100); ++i) {
    uint64_t first = sample::mix64(i * 7919 + 1) % (pages / dirty_run) * dirty_run;
    for (uint64_t p = first; p < first + dirty_run; ++p) {
      std::memset(ram.data() + p * kPage, static_cast<int>(i % 255) + 1, kPage);
      dirty.set(p);
    }
  }
  const uint64_t n_dirty = dirty.count();
  drop_caches();
  t0 = Clock::now();
  auto ds = die_on_error(write_diff(diff, full, contents, {&src, 1}, {&dirty, 1}, opt), "diff write");
  double diff_s = since(t0);
  row("diff write, 1% dirty", fmt::format("{:.3f} s, {} MiB data", diff_s, ds.data_bytes >> 20),
      fmt::format("full write {:.3f} s", full_s),
      fmt::format("{:.1f}% of full (target 5%, {}) {}", 100 * diff_s / full_s, ds.reflinked ? "reflinked" : "copied",
                  pass(diff_s <= 0.05 * full_s)));
  double diff_ideal = std::max(static_cast<double>(ds.data_bytes) / (write_gbps * 1e9), n_dirty / dirty_run / lim.iops);
  row("  same, against I/O limits", fmt::format("ideal {:.3f} s", diff_ideal),
      fmt::format("{} pages in {} runs", n_dirty, n_dirty / dirty_run),
      fmt::format("{:.0f}% of ideal", 100 * diff_ideal / diff_s));

  // A diff taken with resume: the guest is paused only while its dirty
  // pages are copied out; the file is written from the copy afterwards.
  const std::string diff_copied = diff + ".copied";
  drop_caches();
  auto pending = die_on_error(DiffInProgress::prepare(diff_copied, full), "diff prepare");  // before the pause
  t0 = Clock::now();
  auto copied = die_on_error(copy_dirty_pages({&src, 1}, {&dirty, 1}), "copy of the dirty pages");
  double copy_s = since(t0);
  t0 = Clock::now();
  die_on_error(std::move(pending).finish(contents, {&src, 1}, {&dirty, 1}, opt, &copied), "diff from the copy");
  double from_copy_s = since(t0);
  ::unlink(diff_copied.c_str());
  row("diff with resume, 1% dirty", fmt::format("pause {:.4f} s, then {:.3f} s", copy_s, from_copy_s),
      fmt::format("full write {:.3f} s", full_s),
      fmt::format("pause {:.1f}% of full (target 10%) {}", 100 * copy_s / full_s, pass(copy_s <= 0.1 * full_s)));

  std::vector<double> load, map;
  for (int i = 0; i < 50; ++i) {
    t0 = Clock::now();
    auto f = die_on_error(SnapshotFile::open(diff), "open");
    die_on_error(state::load_state(f), "load state");
    load.push_back(since(t0));
    t0 = Clock::now();
    auto m = die_on_error(f.map_ram_cow(0), "map");
    map.push_back(since(t0));
  }
  row("metadata load (open + state)", fmt::format("{:.0f} us median", median_us(load)), "well under 1 ms",
      pass(median_us(load) < 1000));
  row("copy-on-write map", fmt::format("{:.0f} us median", median_us(map)), "well under 1 ms",
      pass(median_us(map) < 1000));
  ::unlink(full.c_str());
  ::unlink(diff.c_str());
}

}  // namespace
}  // namespace snapvm

int main(int argc, char** argv) {
  using namespace snapvm;
  bench::Cli cli("snapvm-bench-format", "snapshot format costs next to the machine's limits");
  CLI::App& app = cli.app();
  std::string sizes = "1G,8G", densities = "2,25,100";
  Config cfg;
  cfg.dir = "build/bench";
  cfg.threads = default_thread_count();
  app.add_option("--sizes", sizes, "guest RAM sizes, comma separated (M or G suffix)");
  app.add_option("--densities", densities, "percent of non-zero pages, comma separated");
  std::string patterns = "clustered,scattered";
  app.add_option("--patterns", patterns, "where data pages lie: clustered (256 KiB runs), scattered (single pages)");
  cli.dir(cfg.dir, "directory on the filesystem to measure (reflink-capable XFS for diff targets)");
  app.add_option("--threads", cfg.threads, "writer threads");
  bool xfs = false;
  app.add_flag("--xfs", xfs, "make and mount a reflink-capable XFS loop filesystem under --dir and measure there (root)");
  cli.parse(argc, argv);
  for (auto& s : CLI::detail::split(sizes, ',')) cfg.sizes.push_back(die_on_error(parse_size(s), "--sizes"));
  for (auto& d : CLI::detail::split(densities, ',')) cfg.densities.push_back(std::stod(d) / 100);
  cfg.patterns = CLI::detail::split(patterns, ',');
  for (const auto& p : cfg.patterns) {
    if (p != "clustered" && p != "scattered") {
      fmt::print(stderr, "snapvm-bench-format: unknown pattern '{}' (clustered, scattered)\n", p);
      return 2;
    }
  }
  std::filesystem::create_directories(cfg.dir);
  std::string mount_point;
  if (xfs) {
    uint64_t largest = *std::max_element(cfg.sizes.begin(), cfg.sizes.end());
    std::string image = cfg.dir + "/xfs.img";
    mount_point = cfg.dir + "/xfs";
    std::filesystem::create_directories(mount_point);
    std::string cmd = fmt::format(
        "umount {1} 2>/dev/null; truncate -s {2} {0} && mkfs.xfs -q -f -m reflink=1 {0} >/dev/null && "
        "mount \"$(losetup --direct-io=on --find --show {0})\" {1}",
        image, mount_point, 2 * largest + (4ull << 30));
    if (std::system(cmd.c_str()) != 0) {
      fmt::print(stderr, "snapvm-bench-format: could not make an XFS loop filesystem (needs root and xfsprogs)\n");
      return 1;
    }
    cfg.dir = mount_point;
  }

  uint64_t probe = std::min<uint64_t>(1ull << 30, *std::max_element(cfg.sizes.begin(), cfg.sizes.end()));
  auto buf = die_on_error(MappedRegion::anonymous(probe), "allocate");
  sample::fill_ram(buf.span(), 1.0, 7);
  double mem = memory_read_gbps(buf.span(), cfg.threads);
  double wr = fs_write_gbps(cfg.dir, buf.span(), cfg.threads);
  double iops = fs_random_iops(cfg.dir, cfg.threads);
  buf.reset();
  fmt::print("snapvm-bench-format: {} thread(s), {} ({}), probes over {} MiB\n", cfg.threads, cfg.dir, fs_name(cfg.dir),
             probe >> 20);
  fmt::print("  memory read bandwidth {:.1f} GB/s; filesystem sequential write {:.2f} GB/s, random 4 KiB writes {:.0f}/s "
             "(fsync included)\n", mem, wr, iops);
  for (uint64_t size : cfg.sizes) {
    // Sustained write bandwidth depends on how much is written (page cache,
    // device caches): measure it with as many bytes as the RAM size.
    double wr_size = wr;
    if (size > probe) {
      auto big = die_on_error(MappedRegion::anonymous_huge(size), "allocate");
      sample::fill_ram(big.span(), 1.0, 7);
      wr_size = fs_write_gbps(cfg.dir, big.span(), cfg.threads);
      fmt::print("\nfilesystem sequential write of {} GiB: {:.2f} GB/s (fsync included)\n", size >> 30, wr_size);
    }
    for (const auto& pattern : cfg.patterns) {
      for (double d : cfg.densities) bench_one(cfg, size, d, pattern, {mem, wr_size, iops});
    }
  }
  if (!mount_point.empty()) {
    std::string cmd = fmt::format("dev=$(findmnt -n -o SOURCE {0}); umount {0} && losetup -d \"$dev\"; rm -f {0}/../xfs.img",
                                  mount_point);
    (void)!std::system(cmd.c_str());  // best effort: the figures are printed already
  }
  return 0;
}
