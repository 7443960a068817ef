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

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/client.h"
#include "tools/bench/bench_guest.h"

namespace snapvm {
namespace {

using Clock = std::chrono::steady_clock;
namespace http = boost::beast::http;

using bench::die;

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

struct Sample {
  double response_ms = 0, reply_ms = 0, start_to_reply_ms = 0;
};

Sample native_once(const Options& o, const std::string& snap) {
  std::string vsock = o.dir + "/n.vsock";
  ::unlink(vsock.c_str());
  auto t0 = Clock::now();
  bench::ChildProcess vmm({o.snapvm, "restore", snap, "--vsock", vsock, "--console", "/dev/null", "--no-sync"},
                          o.dir + "/native.log");
  bench::await_restored_agent(vsock, "native", vmm);
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
  bench::await_restored_agent(vsock, uffd ? "uffd" : "file", vmm);
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
  bench::Cli cli("snapvm-bench-firecracker", "restore through Firecracker's API next to snapvm's native restore");
  cli.guest(o.kernel, o.initrd).snapvm(o.snapvm);
  cli.app().add_option("--page-server", o.page_server, "a userfaultfd page server to Firecracker's handshake");
  cli.reps(o.reps, "restores per way").dir(o.dir);
  cli.parse(argc, argv);
  std::filesystem::create_directories(o.dir);
  const std::string snap = o.dir + "/vm.snap", state = o.dir + "/vm.state", mem = o.dir + "/vm.mem";
  bench::snapshot_booted_guest(o.kernel, o.initrd, 256ull << 20, 2, o.dir + "/boot.vsock", snap, [&](Machine& m) {
    auto two = m.snapshot_two_files(state, mem);
    if (!two) die(two.error().describe());
    bench::progress(fmt::format("saved: {} MiB of data, both ways", two->memory.data_bytes >> 20));
  });
  const bench::Table table({8, 16, 20, 22});
  table.row({"way", "request->204 ms", "request->reply ms", "process start->reply ms"});
  double native = 0;
  for (const std::string way : {"native", "file", "uffd"}) {
    std::vector<Sample> samples;
    for (int i = 0; i < o.reps; ++i) {
      bench::StepWatchdog watchdog(fmt::format("{} restore {}", way, i + 1), std::chrono::minutes(5));
      Sample s = way == "native" ? native_once(o, snap) : api_once(o, state, mem, way == "uffd");
      samples.push_back(s);
      bench::progress(fmt::format("{} {}: response {:.1f} ms, reply {:.1f} ms, start->reply {:.1f} ms", way, i + 1,
                                  s.response_ms, s.reply_ms, s.start_to_reply_ms));
    }
    double m = bench::median(samples, &Sample::start_to_reply_ms);
    if (way == "native") {
      native = m;
      table.row({way, "-", "-", bench::fixed(m, 1)});
    } else {
      table.row({way, bench::fixed(bench::median(samples, &Sample::response_ms), 1),
                 bench::fixed(bench::median(samples, &Sample::reply_ms), 1), bench::fixed(m, 1)},
                fmt::format("   ({:.2f}x of native)", m / native));
    }
    std::fflush(stdout);
  }
  fmt::print("medians of {} restores each, 256 MiB guest with 2 vCPUs; every restore in a fresh process\n", o.reps);
  std::filesystem::remove_all(o.dir);
  return 0;
}
