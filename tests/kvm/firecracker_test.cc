// `snapvm firecracker` end to end, as a Firecracker client drives it: the
// getting-started sequence (machine-config, boot-source, vsock, logger,
// metrics, InstanceStart), then pause/resume and faults, over real HTTP on
// the API socket; the guest answers through the hybrid vsock.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "arch/platform.h"
#include "background_vm.h"
#include "guest_env.h"

namespace snapvm {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace http = boost::beast::http;

struct Reply {
  int status = 0;
  std::string body;
  json fault() const { return json::parse(body, nullptr, false); }
};

// One HTTP/1.1 request on its own connection, as curl --unix-socket sends it.
Reply request(const std::string& sock, http::verb method, const std::string& path, const std::string& body = "") {
  boost::asio::io_context io;
  boost::asio::local::stream_protocol::socket s(io);
  boost::beast::error_code ec;
  s.connect(boost::asio::local::stream_protocol::endpoint(sock), ec);
  if (ec) return {-1, "connect: " + ec.message()};
  http::request<http::string_body> req(method, path, 11);
  req.set(http::field::host, "localhost");
  req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::write(s, req, ec);
  if (ec) return {-1, "write: " + ec.message()};
  boost::beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res, ec);
  if (ec) return {-1, "read: " + ec.message()};
  return {static_cast<int>(res.result_int()), res.body()};
}

Reply put(const std::string& sock, const std::string& path, const json& body) {
  return request(sock, http::verb::put, path, body.dump());
}
Reply patch(const std::string& sock, const std::string& path, const json& body) {
  return request(sock, http::verb::patch, path, body.dump());
}
std::string state_of(const std::string& sock) {
  auto j = json::parse(request(sock, http::verb::get, "/").body, nullptr, false);
  return j.is_object() ? j.value("state", "?") : "?";
}

// `snapvm firecracker --api-sock SOCK` with its console (stdout) in `console`.
pid_t start_vmm(const std::string& sock, const std::string& console, const std::string& errors) {
  ::unlink(sock.c_str());
  pid_t pid = ::fork();
  if (pid == 0) {
    std::string bin = test::snapvm_binary();
    std::string cmd = "exec " + bin + " firecracker --api-sock " + sock + " --id kvm-test >" + console + " 2>" + errors;
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  struct stat st {};
  for (int i = 0; i < 200 && ::stat(sock.c_str(), &st) != 0; ++i) std::this_thread::sleep_for(50ms);
  return pid;
}

bool wait_for(const std::string& path, const std::string& text, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (test::read_text(path).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

TEST(Firecracker, GettingStartedSequenceBootsPausesResumesAndRefusesBadRequests) {
  const std::string sock = "/tmp/fc-api.sock", vsock = "/tmp/fc.vsock", console = "/tmp/fc-console.log",
                    errors = "/tmp/fc-errors.log", metrics = "/tmp/fc-metrics.json", log = "/tmp/fc-log.txt";
  ::unlink(vsock.c_str());
  ::unlink(metrics.c_str());
  ::unlink(log.c_str());
  pid_t vmm = start_vmm(sock, console, errors);
  ASSERT_GT(vmm, 0);
  EXPECT_EQ(state_of(sock), "Not started") << test::read_text(errors);

  // Wrong before the start: each a 400 with a fault message, and the VMM lives on.
  auto bad_type = put(sock, "/machine-config", {{"vcpu_count", "two"}, {"mem_size_mib", 256}});
  EXPECT_EQ(bad_type.status, 400);
  EXPECT_NE(bad_type.fault().value("fault_message", ""), "") << bad_type.body;
  EXPECT_EQ(put(sock, "/machine-config", {{"vcpu_count", 2}, {"mem_size_mib", 256}, {"bogus", 1}}).status, 400);
  EXPECT_EQ(patch(sock, "/vm", {{"state", "Paused"}}).status, 400);
  EXPECT_EQ(request(sock, http::verb::put, "/boot-source", "{not json").status, 400);
  EXPECT_EQ(put(sock, "/actions", {{"action_type", "InstanceStart"}}).status, 400);  // no boot source yet

  EXPECT_EQ(put(sock, "/logger", {{"log_path", log}, {"level", "Info"}}).status, 204);
  EXPECT_EQ(put(sock, "/metrics", {{"metrics_path", metrics}}).status, 204);
  EXPECT_EQ(put(sock, "/machine-config", {{"vcpu_count", 2}, {"mem_size_mib", 256}}).status, 204);
  EXPECT_EQ(put(sock, "/boot-source", {{"kernel_image_path", test::guest_kernel()},
                                      {"initrd_path", test::guest_initrd()},
                                      {"boot_args", std::string(arch::default_cmdline())}})
                .status,
            204);
  EXPECT_EQ(put(sock, "/vsock", {{"guest_cid", 3}, {"uds_path", vsock}}).status, 204);
  auto config = json::parse(request(sock, http::verb::get, "/vm/config").body, nullptr, false);
  EXPECT_EQ(config["machine-config"]["vcpu_count"], 2);
  EXPECT_EQ(config["vsock"]["uds_path"], vsock);

  auto started = put(sock, "/actions", {{"action_type", "InstanceStart"}});
  ASSERT_EQ(started.status, 204) << started.body << test::read_text(errors);
  EXPECT_EQ(state_of(sock), "Running");
  ASSERT_TRUE(wait_for(console, "SNAPVM-GUEST-READY", 600s)) << test::read_text(console) << test::read_text(errors);

  auto hello = test::run(vsock, {"echo", "hello through the hybrid vsock"});
  EXPECT_EQ(hello.out, "hello through the hybrid vsock\n") << hello.error;

  auto late = put(sock, "/machine-config", {{"vcpu_count", 1}, {"mem_size_mib", 128}});
  EXPECT_EQ(late.status, 400);
  EXPECT_NE(late.body.find("after starting"), std::string::npos) << late.body;
  EXPECT_EQ(put(sock, "/snapshot/create", {{"snapshot_path", "/tmp/fc.snap"}, {"mem_file_path", "/tmp/fc.mem"}}).status,
            400);  // only while paused

  ASSERT_EQ(patch(sock, "/vm", {{"state", "Paused"}}).status, 204);
  EXPECT_EQ(state_of(sock), "Paused");
  ASSERT_EQ(patch(sock, "/vm", {{"state", "Resumed"}}).status, 204);
  EXPECT_EQ(state_of(sock), "Running");
  auto again = test::run(vsock, {"echo", "resumed"});
  EXPECT_EQ(again.out, "resumed\n") << again.error;

  ASSERT_EQ(put(sock, "/actions", {{"action_type", "FlushMetrics"}}).status, 204);
  auto line = json::parse(test::read_text(metrics), nullptr, false);
  ASSERT_TRUE(line.is_object()) << test::read_text(metrics);
  EXPECT_EQ(line["vmm"]["state"], "Running");
  EXPECT_EQ(line["vmm"]["vcpus"], 2);
  EXPECT_GE(line["api_server"]["faults"].get<int>(), 7);

  ::kill(vmm, SIGTERM);
  int status = 0;
  ::waitpid(vmm, &status, 0);
}

TEST(Firecracker, TheProcessEndsWhenTheGuestPowersOff) {
  const std::string sock = "/tmp/fc-off.sock", console = "/tmp/fc-off-console.log", errors = "/tmp/fc-off-errors.log";
  pid_t vmm = start_vmm(sock, console, errors);
  ASSERT_GT(vmm, 0);
  ASSERT_EQ(put(sock, "/boot-source", {{"kernel_image_path", test::guest_kernel()},
                                      {"initrd_path", test::guest_initrd()},
                                      {"boot_args", std::string(arch::default_cmdline()) + " snapvm.poweroff"}})
                .status,
            204);
  ASSERT_EQ(put(sock, "/actions", {{"action_type", "InstanceStart"}}).status, 204) << test::read_text(errors);
  int status = -1;
  auto deadline = std::chrono::steady_clock::now() + 600s;
  while (::waitpid(vmm, &status, WNOHANG) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(WIFEXITED(status)) << test::read_text(errors);
  EXPECT_EQ(WEXITSTATUS(status), 0) << test::read_text(errors);
  EXPECT_NE(test::read_text(console).find("SNAPVM-GUEST-READY"), std::string::npos);
  struct stat st {};
  EXPECT_NE(::stat(sock.c_str(), &st), 0) << "the API socket outlived the VMM";
}

}  // namespace
}  // namespace snapvm
