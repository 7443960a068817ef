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

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "agent/client.h"
#include "base/units.h"
#include "tools/bench/bench_guest.h"
#include "vmm/machine.h"

namespace snapvm {
namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "snapvm-bench-restore: {}\n", what);
  std::exit(1);
}

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

void make_snapshot(const Options& o, uint64_t mem, const std::string& path) {
  bench::BenchGuest guest(o.kernel, o.initrd, mem, o.cpus, o.dir + "/bench-boot.vsock");
  bench::StepWatchdog watchdog("snapshot of the booted guest", std::chrono::minutes(10));
  if (!guest.machine().pause()) die("pause failed");
  auto stats = guest.machine().snapshot(path);
  if (!stats) die(stats.error().describe());
  bench::progress(fmt::format("snapshot written: {} MiB of RAM data", stats->data_bytes >> 20));
}

struct Sample {
  RestoreTimings t;
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
  auto m = Machine::restore(path, ro, &s.t);
  s.bytes_read = bench::bytes_read_by(::getpid()) - read0;
  if (!m) die(m.error().describe());
  std::thread runner([&] { (void)(*m)->run(); });
  if (!bench::wait_for_agent(ro.vsock_path, std::chrono::milliseconds(5))) {
    die("the restored guest's agent did not answer within 2 minutes");
  }
  s.first_exec_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  s.touched_kb = resident_kb(path);
  (*m)->request_stop();
  runner.join();
  return s;
}

}  // namespace
}  // namespace snapvm

int main(int argc, char** argv) {
  using namespace snapvm;
  Options o;
  CLI::App app{"snapvm-bench-restore: restore latency against guest RAM size"};
  app.add_option("--kernel", o.kernel, "guest kernel Image")->required();
  app.add_option("--initrd", o.initrd, "guest initramfs (with the snapvm agent)")->required();
  app.add_option("--sizes", o.sizes, "guest RAM sizes, smallest first")->delimiter(',');
  app.add_option("--cpus", o.cpus, "vCPUs per guest");
  app.add_option("--reps", o.reps, "restores per size");
  app.add_option("--dir", o.dir, "where snapshots go");
  CLI11_PARSE(app, argc, argv);
  if (o.reps < 1 || o.sizes.empty()) die("need at least one size and one rep");

  fmt::print("{:>6} {:>10} {:>10} {:>8} {:>10} {:>8} {:>8} {:>11} {:>11} {:>11}\n", "RAM", "restore ms", "open", "map RAM",
             "VM+vCPUs", "irqchip", "devices", "1st exec ms", "bytes read", "RAM touched");
  std::vector<double> medians;
  for (const auto& size_text : o.sizes) {
    auto mem = parse_size(size_text);
    if (!mem) die(mem.error().describe());
    std::string path = fmt::format("{}/bench-restore-{}.snap", o.dir, size_text);
    std::fflush(stdout);
    make_snapshot(o, *mem, path);
    std::vector<double> total, open, map, vcpus, gic, devices, first;
    Sample last;
    for (int i = 0; i < o.reps; ++i) {
      std::string step = fmt::format("restore {} of {} at {}", i + 1, o.reps, size_text);
      bench::StepWatchdog watchdog(step, std::chrono::minutes(5));
      last = restore_once(o, path);
      bench::progress(fmt::format("{}: {:.2f} ms, first exec reply {:.1f} ms", step, last.t.total_us / 1000,
                                  last.first_exec_ms));
      total.push_back(last.t.total_us / 1000);
      open.push_back(last.t.open_us / 1000);
      map.push_back(last.t.map_ram_us / 1000);
      vcpus.push_back(last.t.vcpus_us / 1000);
      gic.push_back(last.t.arch_vm_us / 1000);
      devices.push_back(last.t.devices_us / 1000);
      first.push_back(last.first_exec_ms);
    }
    medians.push_back(bench::median(total));
    fmt::print("{:>6} {:>10.2f} {:>10.2f} {:>8.3f} {:>10.2f} {:>8.2f} {:>8.2f} {:>11.1f} {:>11} {:>8} KiB\n", size_text,
               bench::median(total), bench::median(open), bench::median(map), bench::median(vcpus),
               bench::median(gic), bench::median(devices), bench::median(first),
               last.bytes_read, last.touched_kb);
    std::fflush(stdout);
    ::unlink(path.c_str());
  }
  double ratio = medians.back() / medians.front();
  fmt::print("restore at {} / restore at {}: {:.2f}x (target <= 1.20x: {}) -- medians of {} restores each\n",
             o.sizes.back(), o.sizes.front(), ratio, ratio <= 1.2 ? "met" : "MISSED", o.reps);
  return 0;
}
