// snapvm-bench-diff: what a diff snapshot of a running guest costs next to
// a full one, with a given fraction of guest RAM written since the base, and
// what dirty tracking costs the guest. For each fraction:
//
//   full   pause + write the whole snapshot (the reference)
//   diff   copy the base while the guest runs, then pause + write the pages
//          written since the base (KVM's log and the VMM's own)
//
// printed as time, pause and RAM bytes written, with diff/full ratios next
// to the target (a 1% diff costs at most 10% of a full snapshot).
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/units.h"
#include "tools/bench/bench_guest.h"

namespace snapvm {
namespace {

using bench::die;

struct Options {
  std::string kernel, initrd, dir = "/tmp", mem = "2G";
  std::vector<double> percents = {1, 10};
  uint32_t cpus = 2;
};

Machine::LiveSnapshot snap(Machine& m, const std::string& path, const std::string& base) {
  std::string step = base.empty() ? fmt::format("full snapshot {}", path) : fmt::format("diff snapshot {}", path);
  bench::StepWatchdog watchdog(step, std::chrono::minutes(10));
  auto r = m.snapshot_live(path, base, /*resume=*/true);
  if (!r) die(r.error().describe());
  bench::progress(fmt::format("{}: pause {:.0f} ms", step, r->pause_ms));
  return *r;
}

// Writes `bytes` of fresh non-zero data into guest memory (a tmpfs file).
std::string dirty_script(uint64_t bytes, int round) {
  return fmt::format("yes snapvm-bench-{} | head -c {} > /tmp/dirty{}", round, bytes, round);
}

}  // namespace
}  // namespace snapvm

int main(int argc, char** argv) {
  using namespace snapvm;
  Options o;
  bench::Cli cli("snapvm-bench-diff", "diff against full snapshots of a running guest");
  cli.guest(o.kernel, o.initrd, "guest kernel Image");
  cli.app().add_option("--mem", o.mem, "guest RAM");
  cli.app().add_option("--percents", o.percents, "percent of guest RAM dirtied before each diff")->delimiter(',');
  cli.cpus(o.cpus, "vCPUs").dir(o.dir, "where snapshots go");
  cli.parse(argc, argv);
  auto mem = parse_size(o.mem);
  if (!mem) die(mem.error().describe());

  // What tracking costs the guest: the same write, on a guest without
  // tracking and on one right after a snapshot (every page it writes takes
  // one write-protection fault).
  const uint64_t probe = 64ull << 20;
  double untracked = 0;
  {
    bench::BenchGuest plain(o.kernel, o.initrd, *mem, o.cpus, o.dir + "/bench-plain.vsock");
    plain.run(dirty_script(probe, 0));  // warm up the page cache and the tmpfs file
    untracked = plain.run(dirty_script(probe, 0));
  }

  bench::BenchGuest guest(o.kernel, o.initrd, *mem, o.cpus, o.dir + "/bench-diff.vsock", /*track_dirty=*/true);
  std::string base = o.dir + "/bench-base.snap";
  guest.run(dirty_script(probe, 0));
  snap(guest.machine(), base, {});
  double tracked = guest.run(dirty_script(probe, 0));
  fmt::print("dirty tracking: writing {} MiB in the guest took {:.2f} s tracked (right after a snapshot), {:.2f} s "
             "untracked: {:.2f}x\n",
             probe >> 20, tracked, untracked, tracked / untracked);
  std::fflush(stdout);

  const bench::Table table({6, 9, 10, 10, 11, 10, 10, 11, 8, 8});
  table.row({"dirty", "", "full ms", "pause ms", "RAM MiB", "diff ms", "pause ms", "RAM MiB", "time", "pause"});
  int round = 1;
  for (double pct : o.percents) {
    uint64_t bytes = static_cast<uint64_t>(static_cast<double>(*mem) * pct / 100) & ~uint64_t{4095};
    // The base for this round: a full snapshot of the current state.
    snap(guest.machine(), base, {});
    bench::progress(fmt::format("the guest writes {} MiB", bytes >> 20));
    guest.run(dirty_script(bytes, round));
    std::string diff_path = o.dir + "/bench-diff.snap", full_path = o.dir + "/bench-full.snap";
    auto diff = snap(guest.machine(), diff_path, base);
    // The full snapshot of the same state for comparison (nothing ran in between
    // but the guest's idle ticks).
    auto full = snap(guest.machine(), full_path, {});
    double time_ratio = diff.total_ms / full.total_ms, pause_ratio = diff.pause_ms / full.pause_ms;
    table.row({bench::fixed(pct, 1) + "%", "", bench::fixed(full.total_ms, 1), bench::fixed(full.pause_ms, 1),
               bench::fixed(full.stats.written_bytes / 1048576.0, 1), bench::fixed(diff.total_ms, 1),
               bench::fixed(diff.pause_ms, 1), bench::fixed(diff.stats.written_bytes / 1048576.0, 1),
               bench::fixed(100 * time_ratio, 1) + "%", bench::fixed(100 * pause_ratio, 1) + "%"},
              fmt::format("  ({})", diff.stats.reflinked ? "base reflinked" : "base copied"));
    if (diff.written_while_running) {
      fmt::print("{:>7} diff pause: capture {:.1f} ms, dirty log {:.1f} ms, copy of the dirty pages {:.1f} ms; then "
                 "written in {:.1f} ms while the guest ran; full pause: capture {:.1f} ms, write {:.1f} ms\n",
                 "", diff.capture_ms, diff.dirty_log_ms, diff.copy_ms, diff.write_ms, full.capture_ms, full.write_ms);
    } else {
      fmt::print("{:>7} diff pause: capture {:.1f} ms, dirty log {:.1f} ms, write {:.1f} ms; full pause: capture "
                 "{:.1f} ms, write {:.1f} ms\n",
                 "", diff.capture_ms, diff.dirty_log_ms, diff.write_ms, full.capture_ms, full.write_ms);
    }
    std::fflush(stdout);
    ::unlink(diff_path.c_str());
    ::unlink(full_path.c_str());
    ++round;
  }
  fmt::print("target: a 1% diff costs at most 10% of a full snapshot's time and pause\n");
  ::unlink(base.c_str());
  return 0;
}
