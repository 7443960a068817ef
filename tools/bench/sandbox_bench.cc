// snapvm-bench-sandbox: what the seccomp filters and the jailer cost, side
// by side with a VMM that has neither. One snapshot of a booted guest is
// restored again and again by `snapvm restore` in a fresh process, as
//
//   off      --seccomp off
//   seccomp  --seccomp enforce (the default)
//   jail     snapvm jail ... -- restore (namespaces, pivot_root, uid drop,
//            cgroup; seccomp enforced too)
//
// and for each it reports medians of: the restore itself (the VMM's own
// "restored in" figure), process start to the guest agent's first reply,
// and a vsock round trip (64 bytes to `cat` in the guest and back, through
// the agent's stdin and stdout frames).
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "agent/client.h"
#include "agent/protocol.h"
#include "tools/bench/bench_guest.h"

namespace snapvm {
namespace {

using Clock = std::chrono::steady_clock;
using bench::die;

struct Options {
  std::string kernel, initrd, snapvm = "/payload/snapvm", dir = "/tmp/sandbox-bench";
  int reps = 5, round_trips = 200;
};

struct Sample {
  double restore_ms = 0, first_reply_ms = 0, round_trip_us = 0;
};

// Medians of `round_trips` 64-byte echoes through `cat` in the guest.
double round_trip_us(const std::string& vsock, int round_trips) {
  auto conn = agent::connect_vsock(vsock, agent::kAgentPort);
  if (!conn) die(conn.error().describe());
  std::vector<uint8_t> out;
  agent::append_frame(out, agent::Frame::kExec, std::string(R"({"argv":["cat"]})"));
  if (::send(conn->get(), out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) die("send exec");
  std::string payload(64, 'x');
  std::vector<double> rtts;
  agent::FrameReader reader;
  uint8_t buf[4096];
  for (int i = 0; i < round_trips; ++i) {
    out.clear();
    agent::append_frame(out, agent::Frame::kStdin, payload);
    auto t0 = Clock::now();
    if (::send(conn->get(), out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) die("send");
    size_t got = 0;
    while (got < payload.size()) {
      while (auto m = reader.next()) {
        if (m->type == agent::Frame::kStdout) got += m->payload.size();
      }
      if (got >= payload.size()) break;
      ssize_t n = ::recv(conn->get(), buf, sizeof buf, 0);
      if (n <= 0) die("the agent closed the echo");
      reader.feed({buf, static_cast<size_t>(n)});
    }
    rtts.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  return bench::median(rtts);
}

Sample restore_once(const Options& o, const std::string& mode, const std::string& snap) {
  std::vector<std::string> args;
  std::string vsock;
  if (mode == "jail") {
    vsock = o.dir + "/jails/bench/root/r.vsock";
    args = {o.snapvm, "jail", "--id", "bench", "--uid", "1000", "--gid", "1000", "--root", o.dir + "/jails",
            "--file", snap + ":/vm.snap", "--", "restore", "/vm.snap", "--vsock", "/r.vsock", "--console",
            "/dev/null", "--no-sync", "--json-timings"};
  } else {
    vsock = o.dir + "/r.vsock";
    args = {o.snapvm, "restore", snap, "--vsock", vsock, "--console", "/dev/null", "--no-sync", "--json-timings",
            "--seccomp", mode};
  }
  auto t0 = Clock::now();
  bench::ChildProcess vmm(args, o.dir + "/restore.log");
  Sample s;
  bench::await_restored_agent(vsock, mode, vmm);
  s.first_reply_ms = bench::ms_since(t0);
  s.round_trip_us = round_trip_us(vsock, o.round_trips);
  vmm.stop();
  // The restore in a fresh process (seccomp is the process's, the jail a
  // process of its own): its time is the one `snapvm restore` reports.
  std::string text = vmm.output();
  auto restore_ms = bench::restored_in_ms(text);
  if (!restore_ms) die(mode + ": no restore line: " + text);
  s.restore_ms = *restore_ms;
  return s;
}

}  // namespace
}  // namespace snapvm

int main(int argc, char** argv) {
  using namespace snapvm;
  Options o;
  bench::Cli cli("snapvm-bench-sandbox", "the cost of seccomp and the jailer on restore and vsock round trips");
  cli.guest(o.kernel, o.initrd, "guest kernel Image").snapvm(o.snapvm, "the snapvm binary (static, for the jail)");
  cli.reps(o.reps, "restores per configuration").round_trips(o.round_trips, "vsock round trips per restore").dir(o.dir);
  cli.parse(argc, argv);
  std::filesystem::create_directories(o.dir);
  std::string snap = o.dir + "/vm.snap";
  bench::snapshot_booted_guest(o.kernel, o.initrd, 256ull << 20, 2, o.dir + "/boot.vsock", snap);
  bench::progress("snapshot written");
  // The jailed VMM opens the snapshot as the jail's uid (snapshots are 0600).
  if (::chown(snap.c_str(), 1000, 1000) != 0) die("chown the snapshot for the jail");
  const bench::Table table({8, 12, 18, 16});
  table.row({"config", "restore ms", "start->reply ms", "vsock RTT us"});
  double base[3] = {0, 0, 0};
  for (const std::string mode : {"off", "enforce", "jail"}) {
    std::vector<Sample> samples;
    for (int i = 0; i < o.reps; ++i) {
      bench::StepWatchdog watchdog(fmt::format("{} restore {}", mode, i + 1), std::chrono::minutes(5));
      const Sample& s = samples.emplace_back(restore_once(o, mode, snap));
      bench::progress(fmt::format("{} restore {}: {:.2f} ms, first reply {:.1f} ms, RTT {:.0f} us", mode, i + 1,
                                  s.restore_ms, s.first_reply_ms, s.round_trip_us));
    }
    double m[3] = {bench::median(samples, &Sample::restore_ms), bench::median(samples, &Sample::first_reply_ms),
                   bench::median(samples, &Sample::round_trip_us)};
    if (mode == "off") std::copy(m, m + 3, base);
    std::string name = mode == "enforce" ? "seccomp" : mode;
    table.row({name, bench::fixed(m[0], 2), bench::fixed(m[1], 1), bench::fixed(m[2], 0)},
              fmt::format("   ({:.2f}x, {:.2f}x, {:.2f}x of off)", m[0] / base[0], m[1] / base[1], m[2] / base[2]));
    std::fflush(stdout);
  }
  fmt::print("medians of {} restores each; RTT: median of {} 64-byte echoes per restore\n", o.reps, o.round_trips);
  std::filesystem::remove_all(o.dir);
  return 0;
}
