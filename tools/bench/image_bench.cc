// snapvm-bench-image: how fast an image answers its first HTTP request,
// by way of start. The test image (busybox httpd on TCP 8080,
// tools/testhost/pack-image.sh) is baked once into a warm snapshot, then
// each way is timed from the moment it begins to the first byte of an HTTP
// response through a host TCP port:
//
//   boot       `snapvm run --image` (cold boot, program started by the agent)
//   restore    `snapvm restore` of the warm snapshot in a fresh process
//   restore, page cache dropped   the same after `echo 3 > drop_caches`
//   pool take  `snapvm pool take` on a pool of paused clones (each given
//              its clock and entropy as it entered the pool: a take only
//              resumes), then the request
//   pool take, page cache dropped
//
// Each figure is printed next to the target for native x86_64 KVM
// and as a ratio to booting; in an emulated test host only the ratios carry
// over. No container runtime runs in the test host, so crun is not timed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/protocol.h"
#include "control/control_client.h"
#include "tools/bench/bench_guest.h"

namespace snapvm {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

using bench::die;

struct Options {
  std::string kernel, initrd, snapvm = "/payload/snapvm", store = "/payload/guest/images", image = "web",
                              dir = "/tmp/image-bench", mem = "256M";
  int reps = 5;
  uint16_t port = 8080;
};

// Connects to 127.0.0.1:`host_port` and sends GET / until the first byte of
// a response arrives (a VM still starting closes the connection: try
// again); false after `limit`.
bool first_byte(uint16_t host_port, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(host_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool got = false;
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      const std::string req = "GET / HTTP/1.0\r\n\r\n";
      if (::send(s, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
        pollfd p{s, POLLIN, 0};
        char c;
        got = ::poll(&p, 1, 5000) == 1 && ::recv(s, &c, 1, 0) == 1;
      }
    }
    ::close(s);
    if (got) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

double boot_once(const Options& o, uint16_t host_port) {
  auto t0 = Clock::now();
  bench::ChildProcess vm({o.snapvm, "run", "--image", o.image, "--store", o.store, "--kernel", o.kernel, "--initrd",
                          o.initrd, "--mem", o.mem, "-p", fmt::format("127.0.0.1:{}:{}", host_port, o.port)},
                         o.dir + "/boot.log");
  if (!first_byte(host_port, std::chrono::minutes(3))) die("the booted image never answered: " + vm.output());
  double ms = bench::ms_since(t0);
  vm.stop();
  return ms;
}

double restore_once(const Options& o, const std::string& snap, uint16_t host_port, bool drop) {
  if (drop) bench::drop_caches();
  auto t0 = Clock::now();
  bench::ChildProcess vm({o.snapvm, "restore", snap, "--vsock", o.dir + "/restore.vsock", "--allow-dir", o.store,
                          "--console", "/dev/null", "-p",
                          fmt::format("127.0.0.1:{}:{}", host_port, agent::kTcpRelayBase + o.port)},
                         o.dir + "/restore.log");
  if (!first_byte(host_port, std::chrono::minutes(1))) die("the restored image never answered: " + vm.output());
  double ms = bench::ms_since(t0);
  vm.stop();
  return ms;
}

json pool_request(const std::string& socket, const std::string& op, const std::string& id = {}) {
  auto r = control_request(socket, {{"op", op}, {"id", id}});
  if (!r) die("pool " + op + ": " + r.error().describe());
  return *r;
}

void wait_pool_ready(const std::string& socket, size_t ready) {
  for (auto deadline = Clock::now() + std::chrono::minutes(3); Clock::now() < deadline;) {
    if (pool_request(socket, "status").value("ready", size_t{0}) >= ready) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  die("the pool did not refill");
}

struct Take {
  double first_byte_ms = 0, take_ms = 0, resume_ms = 0, prepare_ms = 0;
};

Take take_once(const std::string& socket, uint16_t port, bool drop) {
  if (drop) bench::drop_caches();
  auto t0 = Clock::now();
  json t = pool_request(socket, "take");
  Take r;
  r.take_ms = bench::ms_since(t0);
  const std::string address = t["addresses"].value(std::to_string(port), "");
  if (address.empty()) die("a take with no address: " + t.dump());
  if (!first_byte(static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1))), std::chrono::minutes(1))) {
    die("the taken clone never answered");
  }
  r.first_byte_ms = bench::ms_since(t0);
  r.resume_ms = t.value("resume_ms", 0.0);
  r.prepare_ms = t.value("prepare_ms", 0.0);
  pool_request(socket, "release", t.value("id", ""));
  return r;
}

}  // namespace
}  // namespace snapvm

int main(int argc, char** argv) {
  using namespace snapvm;
  Options o;
  bench::Cli cli("snapvm-bench-image", "an image's first HTTP byte after boot, restore and pool take");
  cli.guest(o.kernel, o.initrd).snapvm(o.snapvm);
  cli.app().add_option("--store", o.store, "the image store holding the image");
  cli.app().add_option("--image", o.image, "the image (serves HTTP on --port)");
  cli.app().add_option("--port", o.port, "the image's HTTP port");
  cli.app().add_option("--mem", o.mem, "guest RAM");
  cli.reps(o.reps, "runs of each way").dir(o.dir);
  cli.parse(argc, argv);
  std::filesystem::remove_all(o.dir);
  std::filesystem::create_directories(o.dir);
  const std::string snap = o.dir + "/warm.snap", socket = o.dir + "/pool.sock";

  auto t0 = Clock::now();
  {
    bench::ChildProcess bake({o.snapvm, "bake", o.image, snap, "--store", o.store, "--kernel", o.kernel, "--initrd",
                              o.initrd, "--mem", o.mem, "--ready-port", std::to_string(o.port), "--console",
                              o.dir + "/bake.console"},
                             o.dir + "/bake.log");
    for (auto limit = Clock::now() + std::chrono::minutes(5); bake.running() && Clock::now() < limit;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    bake.stop();
    if (bake.output().find("written") == std::string::npos) die("bake failed: " + bake.output());
  }
  bench::progress(fmt::format("baked {} in {:.0f} ms", snap, bench::ms_since(t0)));

  std::vector<double> boot, restore, restore_cold;
  std::vector<Take> take, take_cold;
  for (int i = 0; i < o.reps; ++i) {
    boot.push_back(boot_once(o, static_cast<uint16_t>(18000 + i)));
    restore.push_back(restore_once(o, snap, static_cast<uint16_t>(18100 + i), false));
    restore_cold.push_back(restore_once(o, snap, static_cast<uint16_t>(18200 + i), true));
    bench::progress(fmt::format("rep {}: boot {:.0f} ms, restore {:.1f} ms, restore after drop_caches {:.1f} ms", i + 1,
                                boot.back(), restore.back(), restore_cold.back()));
  }
  {
    bench::ChildProcess pool({o.snapvm, "pool", "serve", snap, "--socket", socket, "--size", "2", "--max", "4",
                              "--port", std::to_string(o.port), "--allow-dir", o.store, "--dir", o.dir + "/clones"},
                             o.dir + "/pool.log");
    for (int i = 0; i < 50 && !std::filesystem::exists(socket); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    for (int i = 0; i < o.reps; ++i) {
      wait_pool_ready(socket, 2);
      take.push_back(take_once(socket, o.port, false));
      wait_pool_ready(socket, 2);
      take_cold.push_back(take_once(socket, o.port, true));
      bench::progress(fmt::format("rep {}: take {:.1f} ms (resume {:.1f}), after drop_caches {:.1f} ms; clone "
                                  "prepared in {:.0f} ms", i + 1, take.back().first_byte_ms, take.back().resume_ms,
                                  take_cold.back().first_byte_ms, take.back().prepare_ms));
    }
    pool_request(socket, "stop");
    pool.stop(std::chrono::seconds(30));
  }
  const double b = bench::median(boot);
  fmt::print("\nimage {} ({} RAM), medians of {}: start -> first HTTP response byte\n", o.image, o.mem, o.reps);
  const bench::Table table({-40, 10, 9});
  table.row({"way", "ms", "vs boot"}, "   target (native x86_64 KVM)");
  auto row = [&](const std::string& way, double ms, const std::string& target) {
    table.row({way, bench::fixed(ms, 1), bench::fixed(ms / b, 3) + "x"}, "   " + target);
  };
  row("boot (snapvm run --image)", b, "-");
  row("restore (fresh process)", bench::median(restore), "under 50 ms");
  row("restore, page cache dropped", bench::median(restore_cold), "under 50 ms");
  row("pool take", bench::median(take, &Take::first_byte_ms), "under 20 ms");
  row("pool take, page cache dropped", bench::median(take_cold, &Take::first_byte_ms), "under 20 ms");
  fmt::print("pool take breakdown (medians): take reply {:.1f} ms (of it resume {:.1f}), then the request; each clone "
             "was prepared (restore, clock and entropy, pause) in {:.0f} ms before it was taken\n",
             bench::median(take, &Take::take_ms), bench::median(take, &Take::resume_ms),
             bench::median(take, &Take::prepare_ms));
  fmt::print("crun: not timed (no container runtime in the test host)\n");
  return 0;
}
