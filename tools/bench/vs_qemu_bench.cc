// snapvm-bench-vs-qemu: snapvm next to QEMU (microvm on x86_64, virt on
// arm64) on the same KVM, guest kernel,
// RAM sizes and vCPU counts, in the same run. Each guest first fills a share
// of its RAM (60 % by default) with pseudo-random bytes, so neither VMM can
// skip zero pages. Per configuration:
//
//   save       snapvm: pause and full snapshot to a file; QEMU: `stop` and
//              `migrate` to a file (bandwidth unlimited), until completed
//   restore    a new process until the guest runs: snapvm `restore` until it
//              reports the vCPUs started; QEMU `-incoming` until the image is
//              loaded, then `cont` (the image was saved stopped) until QMP
//              says "running"
//   1st exec   snapvm only: new process until the guest agent's first reply
//   in-process snapvm's own figure, snapshot open to vCPUs ready, and its
//              bytes read before the guest runs
//
// and the ratios snapvm / QEMU next to their targets (restore at most 1/20
// of QEMU's at 256 MiB and 1/50 at 2 GiB, save at most 1/3), and snapvm's
// restore at the largest size over the smallest (at most 1.1x).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "arch/platform.h"
#include "base/units.h"
#include "tools/bench/bench_guest.h"
#include "tools/bench/qmp_client.h"

namespace snapvm {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::minutes;

using bench::die;

struct Options {
  std::string kernel, initrd, snapvm = "/payload/snapvm", qemu = "/payload/qemu/qemu", dir = "/tmp";
  std::vector<std::string> sizes = {"256M", "2G"};
  std::vector<uint32_t> cpus = {1, 4};
  int fill_percent = 60;
  int reps = 3;
};

uint64_t fill_mib(const Options& o, uint64_t mem) { return (mem >> 20) * static_cast<uint64_t>(o.fill_percent) / 100; }

struct Figures {
  double snapvm_save_ms = 0, qemu_save_ms = 0;
  double snapvm_running_ms = 0, qemu_running_ms = 0, snapvm_first_exec_ms = 0;
  double snapvm_in_process_ms = 0;  // snapshot open to vCPUs ready, as snapvm reports it
  uint64_t snapvm_bytes_read = 0;
  uint64_t snapvm_file_bytes = 0, qemu_file_bytes = 0;
};

uint64_t file_size(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

// --- snapvm -----------------------------------------------------------------

double snapvm_save(const Options& o, uint64_t mem, uint32_t cpus, const std::string& snap) {
  bench::BenchGuest guest(o.kernel, o.initrd, mem, cpus, o.dir + "/vsq-boot.vsock");
  bench::progress(fmt::format("snapvm: filling {} MiB of guest RAM", fill_mib(o, mem)));
  guest.run(fmt::format("mkdir -p /ram && mount -t ramfs ramfs /ram && fill-memory /ram/fill {}", fill_mib(o, mem)));
  bench::StepWatchdog watchdog("snapvm save", minutes(10));
  auto t0 = Clock::now();
  if (!guest.machine().pause()) die("snapvm: pause failed");
  auto stats = guest.machine().snapshot(snap);
  double ms = bench::ms_since(t0);
  if (!stats) die("snapvm: " + stats.error().describe());
  return ms;
}

struct SnapvmRestore {
  double running_ms = 0, first_exec_ms = 0, in_process_ms = 0;
  uint64_t bytes_read = 0;
};

SnapvmRestore snapvm_restore(const Options& o, const std::string& snap) {
  SnapvmRestore r;
  std::string vsock = o.dir + "/vsq-restore.vsock";
  std::string log = o.dir + "/vsq-restore.log";
  auto t0 = Clock::now();
  bench::ChildProcess vm(
      {o.snapvm, "restore", snap, "--vsock", vsock, "--console", "/dev/null", "--no-sync", "--json-timings"}, log);
  if (!vm.wait_for_output(bench::kRestoredLine, minutes(2))) die("snapvm restore did not start: " + vm.output());
  r.running_ms = bench::ms_since(t0);
  r.bytes_read = bench::bytes_read_by(vm.pid());
  if (!bench::wait_for_agent(vsock, milliseconds(1))) die("the restored guest's agent did not answer: " + vm.output());
  r.first_exec_ms = bench::ms_since(t0);
  // In a fresh process, as QEMU's restore is timed: the figure is the one
  // `snapvm restore` reports.
  r.in_process_ms = bench::restored_in_ms(vm.output()).value_or(0);
  vm.stop();
  return r;
}

// --- QEMU -------------------------------------------------------------------

std::vector<std::string> qemu_args(const Options& o, uint64_t mem, uint32_t cpus, const std::string& qmp,
                                   const std::string& console, uint64_t fill) {
  // QEMU's smallest machine for each architecture: microvm on x86_64, virt
  // (GICv3 as snapvm's) on arm64; the guest gets snapvm's command line.
#if defined(__x86_64__)
  const char* machine = "microvm";
#else
  const char* machine = "virt,gic-version=3";
#endif
  return {o.qemu, "-M", machine, "-accel", "kvm", "-cpu", "host", "-m", fmt::format("{}M", mem >> 20), "-smp",
          std::to_string(cpus), "-nodefaults", "-no-user-config", "-display", "none", "-serial", "file:" + console,
          "-kernel", o.kernel, "-initrd", o.initrd, "-append",
          fmt::format("{} snapvm.fill={}", arch::default_cmdline(), fill), "-qmp",
          "unix:" + qmp + ",server=on,wait=off"};
}

double qemu_save(const Options& o, uint64_t mem, uint32_t cpus, const std::string& image) {
  std::string qmp = o.dir + "/vsq-qemu.qmp", console = o.dir + "/vsq-qemu.console";
  ::unlink(qmp.c_str());
  ::unlink(console.c_str());
  bench::progress(fmt::format("QEMU: booting a {} MiB, {}-vCPU guest that fills {} MiB", mem >> 20, cpus,
                              fill_mib(o, mem)));
  bench::ChildProcess vm(qemu_args(o, mem, cpus, qmp, console, fill_mib(o, mem)), o.dir + "/vsq-qemu.log");
  for (auto deadline = Clock::now() + minutes(15);;) {
    if (bench::slurp(console).find("SNAPVM-GUEST-READY") != std::string::npos) break;
    if (!vm.running() || Clock::now() > deadline) {
      die("QEMU's guest did not boot: " + vm.output() + bench::slurp(console));
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  if (bench::slurp(console).find("SNAPVM-GUEST-FILLED") == std::string::npos) die("QEMU's guest did not fill RAM");
  auto q = bench::QmpClient::connect(qmp, minutes(1));
  if (!q) die("QEMU: " + q.error().describe());
  // QEMU limits migration to 32 MiB/s unless told otherwise.
  if (auto r = q->execute("migrate-set-parameters", {{"max-bandwidth", int64_t{1} << 40}}); !r) {
    die("QEMU: " + r.error().describe());
  }
  bench::StepWatchdog watchdog("QEMU save", minutes(15));
  auto t0 = Clock::now();
  if (auto r = q->execute("stop"); !r) die("QEMU: " + r.error().describe());
  if (auto r = q->execute("migrate", {{"uri", "exec:cat > " + image}}); !r) die("QEMU: " + r.error().describe());
  for (;;) {
    auto r = q->execute("query-migrate");
    if (!r) die("QEMU: " + r.error().describe());
    std::string status = r->value("status", "");
    if (status == "completed") break;
    if (status == "failed" || status == "cancelled") die("QEMU migration " + status + ": " + r->dump());
    std::this_thread::sleep_for(milliseconds(1));
  }
  double ms = bench::ms_since(t0);
  (void)q->execute("quit");
  vm.stop();
  return ms;
}

double qemu_restore(const Options& o, uint64_t mem, uint32_t cpus, const std::string& image) {
  std::string qmp = o.dir + "/vsq-qemu-in.qmp", console = o.dir + "/vsq-qemu-in.console";
  ::unlink(qmp.c_str());
  auto args = qemu_args(o, mem, cpus, qmp, console, fill_mib(o, mem));
  args.push_back("-incoming");
  args.push_back("exec:cat " + image);
  auto t0 = Clock::now();
  bench::ChildProcess vm(args, o.dir + "/vsq-qemu-in.log");
  auto q = bench::QmpClient::connect(qmp, minutes(2));
  if (!q) die("QEMU -incoming: " + q.error().describe() + ": " + vm.output());
  for (auto deadline = Clock::now() + minutes(10);;) {
    auto r = q->execute("query-status");
    if (!r) die("QEMU -incoming: " + r.error().describe() + ": " + vm.output());
    std::string status = r->value("status", "");
    if (status == "running") break;
    // The image remembers the source was stopped, so QEMU loads it and
    // stays paused ("inmigrate" while loading): resume it as a user would.
    if (status == "paused" || status == "postmigrate") {
      if (auto c = q->execute("cont"); !c) die("QEMU cont: " + c.error().describe());
      continue;
    }
    if (Clock::now() > deadline) die("QEMU -incoming never ran: " + r->dump());
    std::this_thread::sleep_for(milliseconds(1));
  }
  double ms = bench::ms_since(t0);
  (void)q->execute("quit");
  vm.stop();
  return ms;
}

Figures measure(const Options& o, uint64_t mem, const std::string& size_text, uint32_t cpus) {
  Figures f;
  std::string snap = fmt::format("{}/vsq-{}-{}.snap", o.dir, size_text, cpus);
  std::string image = fmt::format("{}/vsq-{}-{}.qemu", o.dir, size_text, cpus);
  f.snapvm_save_ms = snapvm_save(o, mem, cpus, snap);
  f.snapvm_file_bytes = file_size(snap);
  bench::progress(fmt::format("snapvm: saved in {:.0f} ms", f.snapvm_save_ms));
  std::vector<SnapvmRestore> restores;
  for (int i = 0; i < o.reps; ++i) {
    bench::StepWatchdog watchdog("snapvm restore", minutes(5));
    const auto& r = restores.emplace_back(snapvm_restore(o, snap));
    bench::progress(fmt::format("snapvm restore {} of {}: running at {:.1f} ms, first exec {:.1f} ms", i + 1, o.reps,
                                r.running_ms, r.first_exec_ms));
    f.snapvm_bytes_read = r.bytes_read;
  }
  f.snapvm_running_ms = bench::median(restores, &SnapvmRestore::running_ms);
  f.snapvm_first_exec_ms = bench::median(restores, &SnapvmRestore::first_exec_ms);
  f.snapvm_in_process_ms = bench::median(restores, &SnapvmRestore::in_process_ms);
  ::unlink(snap.c_str());  // room for QEMU's image in the same tmpfs

  f.qemu_save_ms = qemu_save(o, mem, cpus, image);
  f.qemu_file_bytes = file_size(image);
  bench::progress(fmt::format("QEMU: saved in {:.0f} ms", f.qemu_save_ms));
  std::vector<double> qrunning;
  for (int i = 0; i < o.reps; ++i) {
    bench::StepWatchdog watchdog("QEMU restore", minutes(10));
    qrunning.push_back(qemu_restore(o, mem, cpus, image));
    bench::progress(fmt::format("QEMU restore {} of {}: running at {:.1f} ms", i + 1, o.reps, qrunning.back()));
  }
  f.qemu_running_ms = bench::median(qrunning);
  ::unlink(image.c_str());
  return f;
}

}  // namespace
}  // namespace snapvm

int main(int argc, char** argv) {
  using namespace snapvm;
  Options o;
  bench::Cli cli("snapvm-bench-vs-qemu", "snapvm and QEMU saving and restoring the same guest on the same KVM");
  cli.guest(o.kernel, o.initrd, "guest kernel", "guest initramfs (snapvm's init: agent and fill-memory)");
  cli.snapvm(o.snapvm, "snapvm binary");
  CLI::App& app = cli.app();
  app.add_option("--qemu", o.qemu, "QEMU for this architecture, with KVM");
  cli.sizes(o.sizes);
  app.add_option("--cpus", o.cpus, "vCPU counts")->delimiter(',');
  app.add_option("--fill", o.fill_percent, "percent of guest RAM the guest fills before each save")
      ->check(CLI::Range(0, 90));
  app.add_option("--reps", o.reps, "restores per configuration (medians)")->check(CLI::Range(1, 100));
  cli.dir(o.dir, "where snapshots go");
  cli.parse(argc, argv);
  if (o.sizes.empty() || o.cpus.empty()) die("need at least one size and one vCPU count");
  if (::access(o.qemu.c_str(), X_OK) != 0) die(o.qemu + " is not an executable QEMU");

  struct Row {
    std::string size;
    uint32_t cpus;
    Figures f;
  };
  std::vector<Row> rows;
  for (uint32_t cpus : o.cpus) {
    for (const auto& size_text : o.sizes) {
      auto mem = parse_size(size_text);
      if (!mem) die(mem.error().describe());
      rows.push_back({size_text, cpus, measure(o, *mem, size_text, cpus)});
    }
  }
  fmt::print("guest RAM {} % filled with random bytes; medians of {} restores; times in ms\n", o.fill_percent, o.reps);
  const bench::Table table({5, 6, 1, 11, 9, 7, 1, 14, 12, 7, 7, 1, 10, 11, 11});
  table.row({"vCPUs", "RAM", "|", "snapvm save", "QEMU save", "ratio", "|", "snapvm restore", "QEMU restore", "ratio",
             "target", "|", "1st exec", "in-process", "bytes read"});
  bool all_met = true;
  for (const auto& r : rows) {
    double save_ratio = r.f.snapvm_save_ms / r.f.qemu_save_ms;
    double restore_ratio = r.f.snapvm_running_ms / r.f.qemu_running_ms;
    double target = parse_size(r.size).value_or(0) >= (2ull << 30) ? 1.0 / 50 : 1.0 / 20;
    all_met = all_met && save_ratio <= 1.0 / 3 && restore_ratio <= target;
    table.row({std::to_string(r.cpus), r.size, "|", bench::fixed(r.f.snapvm_save_ms, 0),
               bench::fixed(r.f.qemu_save_ms, 0), bench::fixed(save_ratio, 3), "|",
               bench::fixed(r.f.snapvm_running_ms, 1), bench::fixed(r.f.qemu_running_ms, 1),
               bench::fixed(restore_ratio, 4), bench::fixed(target, 4), "|", bench::fixed(r.f.snapvm_first_exec_ms, 1),
               bench::fixed(r.f.snapvm_in_process_ms, 2), std::to_string(r.f.snapvm_bytes_read)});
    fmt::print("      save snapvm/QEMU {:.3f} (target <= 0.333: {}); restore snapvm/QEMU {:.4f} (target <= {:.4f}: {}); "
               "files {} MiB / {} MiB\n",
               save_ratio, bench::verdict(save_ratio, 1.0 / 3), restore_ratio, target, bench::verdict(restore_ratio, target),
               r.f.snapvm_file_bytes >> 20, r.f.qemu_file_bytes >> 20);
  }
  for (uint32_t cpus : o.cpus) {
    const Figures* small = nullptr;
    const Figures* large = nullptr;
    for (const auto& r : rows) {
      if (r.cpus != cpus) continue;
      if (small == nullptr) small = &r.f;
      large = &r.f;
    }
    if (small == nullptr || small == large) continue;
    double growth = large->snapvm_in_process_ms / small->snapvm_in_process_ms;
    all_met = all_met && growth <= 1.1;
    fmt::print("{} vCPU: snapvm restore at {} / at {}: {:.2f}x (target <= 1.10x: {})\n", cpus, o.sizes.back(),
               o.sizes.front(), growth, bench::verdict(growth, 1.1));
  }
  fmt::print("targets: {}\n", all_met ? "all met" : "some MISSED (see above)");
  return 0;
}
