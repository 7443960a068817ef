// snapvm-bench-net: TCP throughput both ways and request latency between
// the host and a guest on virtio-net (`snapvm run --net tap=...`), next to
// the same measured in the same run over a veth pair into another network
// namespace of the host. The far end is the same program on both paths
// (busybox nc, static, in the guest and in the namespace), so the ratio is
// what virtio-net, the tap and the guest kernel cost against the host's own
// stack:
//
//   guest->host  the far end writes /dev/zero into the socket; the
//                benchmark reads for --seconds and counts
//   host->guest  the benchmark writes for --seconds, shuts down its side,
//                and waits for the far end's "done" after it read all
//   RTT          64-byte requests echoed by `cat`, TCP_NODELAY, median
//
// Everything runs in network namespaces of its own making; the host's
// namespace only gets the tap and one end of the veth.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "agent/client.h"
#include "arch/platform.h"
#include "base/unique_fd.h"
#include "tools/bench/bench_guest.h"

namespace snapvm {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using bench::die;

struct Options {
  std::string kernel, initrd, snapvm = "/payload/snapvm", dir = "/tmp/net-bench";
  int reps = 3, round_trips = 500;
  double seconds = 3;
};

constexpr uint16_t kSendPort = 5001, kSinkPort = 5002, kEchoPort = 5003;

// The far end's three servers, persistent (-ll: one fork per connection).
const std::string kServers =
    "nc -ll -p 5001 -e cat /dev/zero </dev/null >/dev/null 2>&1 & "
    "nc -ll -p 5002 -e sh -c 'cat > /dev/null; echo done' </dev/null >/dev/null 2>&1 & "
    "nc -ll -p 5003 -e cat </dev/null >/dev/null 2>&1 & ";

void sh(const std::string& cmd) {
  if (std::system(cmd.c_str()) != 0) die("failed: " + cmd);
}

UniqueFd connect_to(const std::string& ip, uint16_t port) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
    std::this_thread::sleep_for(100ms);  // the server may not listen yet
  }
  die(fmt::format("cannot connect to {}:{}", ip, port));
}

// MB/s the far end sends at: bytes read over --seconds from the first byte.
double far_to_host_mbps(const std::string& ip, double seconds) {
  UniqueFd fd = connect_to(ip, kSendPort);
  std::vector<char> buf(1 << 20);
  ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
  if (n <= 0) die(ip + ": the sender closed at once");
  const auto t0 = Clock::now();
  uint64_t bytes = 0;
  for (;;) {
    n = ::recv(fd.get(), buf.data(), buf.size(), 0);
    if (n <= 0) die(ip + ": the sender closed early");
    bytes += static_cast<uint64_t>(n);
    double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    if (elapsed >= seconds) return static_cast<double>(bytes) / elapsed / 1e6;
  }
}

// MB/s the far end receives at: written for --seconds, counted to its "done".
double host_to_far_mbps(const std::string& ip, double seconds) {
  UniqueFd fd = connect_to(ip, kSinkPort);
  std::vector<char> buf(1 << 16, 0);
  const auto t0 = Clock::now();
  uint64_t bytes = 0;
  while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds) {
    ssize_t n = ::send(fd.get(), buf.data(), buf.size(), MSG_NOSIGNAL);
    if (n <= 0) die(ip + ": the receiver closed early");
    bytes += static_cast<uint64_t>(n);
  }
  ::shutdown(fd.get(), SHUT_WR);
  char reply[16];
  ssize_t n = ::recv(fd.get(), reply, sizeof reply, MSG_WAITALL);
  if (n < 4 || std::string(reply, 4) != "done") die(ip + ": the receiver did not say done");
  return static_cast<double>(bytes) / std::chrono::duration<double>(Clock::now() - t0).count() / 1e6;
}

// Median microseconds of `count` 64-byte request/echo round trips.
double round_trip_us(const std::string& ip, int count) {
  UniqueFd fd = connect_to(ip, kEchoPort);
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char req[64], resp[64];
  std::fill(std::begin(req), std::end(req), 'r');
  std::vector<double> rtts;
  for (int i = 0; i < count; ++i) {
    const auto t0 = Clock::now();
    if (::send(fd.get(), req, sizeof req, MSG_NOSIGNAL) != sizeof req) die(ip + ": echo send");
    if (::recv(fd.get(), resp, sizeof resp, MSG_WAITALL) != sizeof resp) die(ip + ": echo closed");
    rtts.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  return bench::median(rtts);
}

// Runs `sh -c script` in the guest and returns its stdout; exits with one
// line if it fails.
std::string guest_sh(const std::string& vsock, const std::string& script) {
  agent::ExecRequest req;
  req.argv = {"sh", "-c", script};
  std::string out, err;
  auto r = agent::exec(
      vsock, req, [&](std::string_view s) { out.append(s); }, [&](std::string_view s) { err.append(s); });
  if (!r || r->exit_code != 0) die("in the guest: " + script + ": " + (r ? err : r.error().describe()));
  return out;
}

// The header and `iface`'s line of the host's /proc/net/dev.
std::string host_interface_counters(const std::string& iface) {
  std::ifstream in("/proc/net/dev");
  std::string out, line;
  for (int n = 0; std::getline(in, line); ++n) {
    if (n < 2 || line.find(" " + iface + ":") != std::string::npos) out += line + "\n";
  }
  return out;
}

bool wait_for_link(const std::string& name) {
  for (int i = 0; i < 600; ++i) {
    if (std::system(("ip link show " + name + " >/dev/null 2>&1").c_str()) == 0) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

struct Figures {
  double to_host = 0, from_host = 0, rtt = 0;
};

Figures measure(const std::string& path, const std::string& ip, const Options& o) {
  std::vector<Figures> runs;
  for (int i = 0; i < o.reps; ++i) {
    bench::StepWatchdog watchdog(fmt::format("{} run {}", path, i + 1), std::chrono::minutes(3));
    Figures& f = runs.emplace_back();
    f.to_host = far_to_host_mbps(ip, o.seconds);
    f.from_host = host_to_far_mbps(ip, o.seconds);
    f.rtt = round_trip_us(ip, o.round_trips);
    bench::progress(fmt::format("{} run {}: {:.1f} MB/s to host, {:.1f} MB/s from host, RTT {:.0f} us", path, i + 1,
                                f.to_host, f.from_host, f.rtt));
  }
  return {bench::median(runs, &Figures::to_host), bench::median(runs, &Figures::from_host),
          bench::median(runs, &Figures::rtt)};
}

}  // namespace
}  // namespace snapvm

int main(int argc, char** argv) {
  using namespace snapvm;
  Options o;
  bench::Cli cli("snapvm-bench-net", "virtio-net TCP throughput and latency against a veth pair, same run");
  cli.guest(o.kernel, o.initrd).snapvm(o.snapvm).reps(o.reps, "measurements per path");
  cli.app().add_option("--seconds", o.seconds, "seconds per throughput measurement");
  cli.round_trips(o.round_trips, "echoes per latency measurement").dir(o.dir);
  cli.parse(argc, argv);
  std::filesystem::remove_all(o.dir);
  std::filesystem::create_directories(o.dir);

  // The veth path: a namespace whose end is configured once the other end
  // has arrived in ours.
  const std::string ready = o.dir + "/veth-ready";
  bench::ChildProcess veth_side(
      {"/bin/unshare", "-n", "/bin/sh", "-c",
       "set -e; ip link set lo up; ip link add bvpeer type veth; ip link set veth0 name bvhost; "
       "ip link set bvhost netns 1; while [ ! -e " + ready + " ]; do sleep 0.1; done; "
       "ip addr add 10.0.3.2/24 dev bvpeer; ip link set bvpeer up; " + kServers + "echo servers up; wait"},
      o.dir + "/veth.log");
  if (!wait_for_link("bvhost")) die("the veth never arrived: " + veth_side.output());
  sh("ip addr add 10.0.3.1/24 dev bvhost && ip link set bvhost up && touch " + ready);
  if (!veth_side.wait_for_output("servers up", 30s)) die("the veth side did not start: " + veth_side.output());

  // The virtio-net path.
  const std::string vsock = o.dir + "/vm.vsock";
  bench::ChildProcess vmm({o.snapvm, "run", "-k", o.kernel, "--initrd", o.initrd, "-m", "512M", "-c", "2", "--vsock", vsock,
                           "--console", o.dir + "/console.log", "--net", "tap=bnet0", "--cmdline",
                           std::string(arch::default_cmdline()) + " ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off"},
                          o.dir + "/vmm.log");
  if (!wait_for_link("bnet0")) die("the VMM made no tap: " + vmm.output());
  sh("ip addr add 10.0.2.1/24 dev bnet0 && ip link set bnet0 up");
  if (!bench::wait_for_agent(vsock, 100ms, std::chrono::minutes(10))) die("the guest never answered: " + vmm.output());
  guest_sh(vsock, kServers + "sleep 0.5");
  bench::progress("guest and veth servers up");

  const Figures veth = measure("veth", "10.0.3.2", o);
  const Figures net = measure("virtio-net", "10.0.2.2", o);
  const bench::Table table({11, 17, 17, 12});
  auto cells = [](const std::string& path, const Figures& f) {
    return std::vector<std::string>{path, bench::fixed(f.to_host, 1), bench::fixed(f.from_host, 1),
                                    bench::fixed(f.rtt, 0)};
  };
  table.row({"path", "guest->host MB/s", "host->guest MB/s", "RTT us"});
  table.row(cells("veth", veth));
  table.row(cells("virtio-net", net), fmt::format("   ({:.2f}x, {:.2f}x, {:.2f}x of veth)", net.to_host / veth.to_host,
                                                  net.from_host / veth.from_host, net.rtt / veth.rtt));
  fmt::print("medians of {} runs of {:.0f} s per direction; RTT: median of {} 64-byte echoes per run\n", o.reps,
             o.seconds, o.round_trips);
  // Where frames were lost, if anywhere: both ends' interface counters and
  // the guest's TCP retransmissions.
  fmt::print("guest eth0 and TCP counters:\n{}host tap:\n{}",
             guest_sh(vsock, "grep -E 'Inter|face|eth0' /proc/net/dev; grep Tcp: /proc/net/snmp; "
                               "cat /sys/class/net/eth0/device/features; grep -i virtio /proc/interrupts"),
             host_interface_counters("bnet0"));
  vmm.stop();
  veth_side.stop();
  std::filesystem::remove_all(o.dir);
  return 0;
}
