// snapvm-bench-firecracker: restore through Firecracker's API next to
// snapvm's native restore, in the same run. One booted guest is saved both
// ways (one snapvm file; Firecracker's state + memory files), then restored
// again and again in fresh processes:
//
//   native   snapvm restore FILE (process start to the agent's first reply)
//   file     snapvm firecracker, PUT /snapshot/load with mem_backend File
//   uffd     the same with mem_backend Uffd, pages served by a separate
//            page-server process (snapvm-test-page-server)
//
// For the API it reports request to response and request to the agent's
// first reply, and process start to that reply, medians of --reps.
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/client.h"
#include "tools/bench/bench_guest.h"
#include "tools/bench/child_process.h"

namespace snapvm {
namespace {

using Clock = std::chrono::steady_clock;
namespace http = boost::beast::http;

[[noreturn]] void die(const std::string& what) { bench::die("snapvm-bench-firecracker", what); }

struct Options {
  std::string kernel, initrd, snapvm = "/payload/snapvm", page_server = "/payload/snapvm-test-page-server",
                              dir = "/tmp/fc-bench";
  int reps = 5;
};

// PUT `path` with `body` on the API socket; returns the HTTP status.
int put(const std::string& sock, const std::string& path, const nlohmann::json& body, std::string* reply) {
  boost::asio::io_context io;
  boost::asio::local::stream_protocol::socket s(io);
  boost::beast::error_code ec;
  s.connect(boost::asio::local::stream_protocol::endpoint(sock), ec);
  if (ec) die("connect " + sock + ": " + ec.message());
  http::request<http::string_body> req(http::verb::put, path, 11);
  req.set(http::field::host, "localhost");
  req.set(http::field::content_type, "application/json");
  req.body() = body.dump();
  req.prepare_payload();
  http::write(s, req, ec);
  boost::beast::flat_buffer buf;
  http::response<http::string_body> res;
  if (!ec) http::read(s, buf, res, ec);
  if (ec) die("HTTP " + path + ": " + ec.message());
  *reply = res.body();
  return static_cast<int>(res.result_int());
}

void wait_for_agent(const std::string& vsock, const std::string& what, bench::ChildProcess& vmm) {
  if (!bench::wait_for_agent(vsock, std::chrono::milliseconds(2))) {
    die(fmt::format("{}: the restored agent never answered: {}", what, vmm.output()));
  }
}

struct Sample {
  double response_ms = 0, reply_ms = 0, start_to_reply_ms = 0;
};

Sample native_once(const Options& o, const std::string& snap) {
  std::string vsock = o.dir + "/n.vsock";
  ::unlink(vsock.c_str());
  auto t0 = Clock::now();
  bench::ChildProcess vmm({o.snapvm, "restore", snap, "--vsock", vsock, "--console", "/dev/null", "--no-sync"},
                          o.dir + "/native.log");
  wait_for_agent(vsock, "native", vmm);
  Sample s;
  s.start_to_reply_ms = s.reply_ms = bench::ms_since(t0);
  vmm.stop();
  return s;
}

Sample api_once(const Options& o, const std::string& state, const std::string& mem, bool uffd) {
  const std::string sock = o.dir + "/api.sock", vsock = o.dir + "/a.vsock", uffd_sock = o.dir + "/uffd.sock";
  ::unlink(vsock.c_str());
  ::unlink(sock.c_str());
  std::unique_ptr<bench::ChildProcess> server;
  if (uffd) {
    server = std::make_unique<bench::ChildProcess>(std::vector<std::string>{o.page_server, uffd_sock, mem},
                                                   o.dir + "/page-server.log");
    if (!server->wait_for_output("listening", std::chrono::seconds(30))) die("the page server did not start");
  }
  auto t0 = Clock::now();
  bench::ChildProcess vmm({o.snapvm, "firecracker", "--api-sock", sock}, o.dir + "/api.log");
  struct stat st {};
  while (::stat(sock.c_str(), &st) != 0) {
    if (bench::ms_since(t0) > 60'000) die("the API socket never appeared: " + vmm.output());
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  nlohmann::json backend = {{"backend_type", uffd ? "Uffd" : "File"}, {"backend_path", uffd ? uffd_sock : mem}};
  auto t1 = Clock::now();
  std::string reply;
  int status = put(sock, "/snapshot/load",
                   {{"snapshot_path", state}, {"mem_backend", backend}, {"resume_vm", true},
                    {"vsock_override", {{"uds_path", vsock}}}},
                   &reply);
  Sample s;
  s.response_ms = bench::ms_since(t1);
  if (status != 204) die(fmt::format("snapshot/load answered {}: {}", status, reply));
  wait_for_agent(vsock, uffd ? "uffd" : "file", vmm);
  s.reply_ms = bench::ms_since(t1);
  s.start_to_reply_ms = bench::ms_since(t0);
  vmm.stop();
  if (server) server->stop();
  return s;
}

}  // namespace
}  // namespace snapvm

int main(int argc, char** argv) {
  using namespace snapvm;
  Options o;
  std::string mem_size = "256M";
  CLI::App app{"snapvm-bench-firecracker: restore through Firecracker's API next to snapvm's native restore"};
  app.add_option("--kernel", o.kernel, "guest kernel")->required();
  app.add_option("--initrd", o.initrd, "guest initramfs (with the snapvm agent)")->required();
  app.add_option("--snapvm", o.snapvm, "the snapvm binary");
  app.add_option("--page-server", o.page_server, "a userfaultfd page server to Firecracker's handshake");
  app.add_option("--reps", o.reps, "restores per way");
  app.add_option("--dir", o.dir, "scratch directory");
  CLI11_PARSE(app, argc, argv);
  std::filesystem::create_directories(o.dir);
  const std::string snap = o.dir + "/vm.snap", state = o.dir + "/vm.state", mem = o.dir + "/vm.mem";
  {
    bench::BenchGuest guest(o.kernel, o.initrd, 256ull << 20, 2, o.dir + "/boot.vsock");
    if (!guest.machine().pause()) die("pause failed");
    auto one = guest.machine().snapshot(snap);
    if (!one) die(one.error().describe());
    auto two = guest.machine().snapshot_two_files(state, mem);
    if (!two) die(two.error().describe());
    bench::progress(fmt::format("saved: {} MiB of data, both ways", two->memory.data_bytes >> 20));
  }
  fmt::print("{:>8} {:>16} {:>20} {:>22}\n", "way", "request->204 ms", "request->reply ms", "process start->reply ms");
  double native = 0;
  for (const std::string way : {"native", "file", "uffd"}) {
    std::vector<double> response, reply, start;
    for (int i = 0; i < o.reps; ++i) {
      bench::StepWatchdog watchdog(fmt::format("{} restore {}", way, i + 1), std::chrono::minutes(5));
      Sample s = way == "native" ? native_once(o, snap) : api_once(o, state, mem, way == "uffd");
      response.push_back(s.response_ms);
      reply.push_back(s.reply_ms);
      start.push_back(s.start_to_reply_ms);
      bench::progress(fmt::format("{} {}: response {:.1f} ms, reply {:.1f} ms, start->reply {:.1f} ms", way, i + 1,
                                  s.response_ms, s.reply_ms, s.start_to_reply_ms));
    }
    double m = bench::median(start);
    if (way == "native") {
      native = m;
      fmt::print("{:>8} {:>16} {:>20} {:>22.1f}\n", way, "-", "-", m);
    } else {
      fmt::print("{:>8} {:>16.1f} {:>20.1f} {:>22.1f}   ({:.2f}x of native)\n", way, bench::median(response),
                 bench::median(reply), m, m / native);
    }
    std::fflush(stdout);
  }
  fmt::print("medians of {} restores each, 256 MiB guest with 2 vCPUs; every restore in a fresh process\n", o.reps);
  std::filesystem::remove_all(o.dir);
  return 0;
}
