// snapvm-bench-restore: how long a restore takes and whether it grows with
// guest RAM. Boots a guest per size, snapshots it, then restores it again
// and again in this process and reports, per size:
//
//   restore      snapshot open to vCPUs ready to run, with its breakdown
//   first exec   restore start to the first reply of the guest agent
//   bytes read   read() bytes from the file before the guest runs
//   RAM touched  snapshot pages resident when the first exec replied
//
// and the ratio of the largest size's restore to the smallest's, next to
// the target (restore is O(1) in RAM size: within 1.2x).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "agent/client.h"
#include "base/units.h"
#include "tools/bench/bench_guest.h"
#include "vmm/machine.h"
#include "vmm/vm_runner.h"

namespace snapvm {
namespace {

using Clock = std::chrono::steady_clock;
using bench::die;

// Resident kB of this process's mappings of `file`.
long resident_kb(const std::string& file) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  long kb_total = 0;
  while (std::getline(smaps, line)) {
    if (!line.empty() && line.find(':') > line.find(' ')) {
      inside = line.size() >= file.size() && line.compare(line.size() - file.size(), file.size(), file) == 0;
      continue;
    }
    if (inside && line.rfind("Rss:", 0) == 0) {
      std::istringstream in(line.substr(4));
      long kb = 0;
      in >> kb;
      kb_total += kb;
    }
  }
  return kb_total;
}

struct Options {
  std::string kernel, initrd, dir = "/tmp";
  std::vector<std::string> sizes = {"256M", "2G"};
  uint32_t cpus = 2;
  int reps = 5;
};

// One restore: the library's timings in ms, then what followed.
struct Sample {
  double total_ms = 0, open_ms = 0, map_ms = 0, vcpus_ms = 0, irqchip_ms = 0, devices_ms = 0;
  double first_exec_ms = 0;
  uint64_t bytes_read = 0;
  long touched_kb = 0;
};

Sample restore_once(const Options& o, const std::string& path) {
  Sample s;
  RestoreOptions ro;
  ro.vsock_path = o.dir + "/bench-restore.vsock";
  auto t0 = Clock::now();
  uint64_t read0 = bench::bytes_read_by(::getpid());
  RestoreTimings t;
  auto m = Machine::restore(path, ro, &t);
  s.bytes_read = bench::bytes_read_by(::getpid()) - read0;
  if (!m) die(m.error().describe());
  s.total_ms = t.total_us / 1000;
  s.open_ms = t.open_us / 1000;
  s.map_ms = t.map_ram_us / 1000;
  s.vcpus_ms = t.vcpus_us / 1000;
  s.irqchip_ms = t.arch_vm_us / 1000;
  s.devices_ms = t.devices_us / 1000;
  auto runner = VmRunner::start(std::move(*m));
  if (!runner) die(runner.error().describe());
  if (!bench::wait_for_agent(ro.vsock_path, std::chrono::milliseconds(5))) {
    die("the restored guest's agent did not answer within 2 minutes");
  }
  s.first_exec_ms = bench::ms_since(t0);
  s.touched_kb = resident_kb(path);
  return s;  // the runner stops and joins the VM
}

}  // namespace
}  // namespace snapvm

int main(int argc, char** argv) {
  using namespace snapvm;
  Options o;
  bench::Cli cli("snapvm-bench-restore", "restore latency against guest RAM size");
  cli.guest(o.kernel, o.initrd, "guest kernel Image").sizes(o.sizes).cpus(o.cpus);
  cli.reps(o.reps, "restores per size").dir(o.dir, "where snapshots go");
  cli.parse(argc, argv);
  if (o.reps < 1 || o.sizes.empty()) die("need at least one size and one rep");

  const bench::Table table({6, 10, 10, 8, 10, 8, 8, 11, 11, 11});
  table.row({"RAM", "restore ms", "open", "map RAM", "VM+vCPUs", "irqchip", "devices", "1st exec ms", "bytes read",
             "RAM touched"});
  std::vector<double> medians;
  for (const auto& size_text : o.sizes) {
    auto mem = parse_size(size_text);
    if (!mem) die(mem.error().describe());
    std::string path = fmt::format("{}/bench-restore-{}.snap", o.dir, size_text);
    std::fflush(stdout);
    auto stats = bench::snapshot_booted_guest(o.kernel, o.initrd, *mem, o.cpus, o.dir + "/bench-boot.vsock", path);
    bench::progress(fmt::format("snapshot written: {} MiB of RAM data", stats.data_bytes >> 20));
    std::vector<Sample> samples;
    for (int i = 0; i < o.reps; ++i) {
      std::string step = fmt::format("restore {} of {} at {}", i + 1, o.reps, size_text);
      bench::StepWatchdog watchdog(step, std::chrono::minutes(5));
      samples.push_back(restore_once(o, path));
      const Sample& s = samples.back();
      bench::progress(fmt::format("{}: {:.2f} ms, first exec reply {:.1f} ms", step, s.total_ms, s.first_exec_ms));
    }
    medians.push_back(bench::median(samples, &Sample::total_ms));
    const Sample& last = samples.back();
    table.row({size_text, bench::fixed(medians.back(), 2), bench::fixed(bench::median(samples, &Sample::open_ms), 2),
               bench::fixed(bench::median(samples, &Sample::map_ms), 3),
               bench::fixed(bench::median(samples, &Sample::vcpus_ms), 2),
               bench::fixed(bench::median(samples, &Sample::irqchip_ms), 2),
               bench::fixed(bench::median(samples, &Sample::devices_ms), 2),
               bench::fixed(bench::median(samples, &Sample::first_exec_ms), 1), std::to_string(last.bytes_read),
               fmt::format("{:>8} KiB", last.touched_kb)});
    std::fflush(stdout);
    ::unlink(path.c_str());
  }
  double ratio = medians.back() / medians.front();
  fmt::print("restore at {} / restore at {}: {:.2f}x (target <= 1.20x: {}) -- medians of {} restores each\n",
             o.sizes.back(), o.sizes.front(), ratio, bench::verdict(ratio, 1.2), o.reps);
  return 0;
}
