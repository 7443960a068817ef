// `snapvm firecracker` end to end, as a Firecracker client drives it: the
// getting-started sequence (machine-config, boot-source, vsock, logger,
// metrics, InstanceStart), then pause/resume and faults, over real HTTP on
// the API socket; the guest answers through the hybrid vsock.
// Boots through the API (InstanceStart): Firecracker clients' boot path is
// what is tested.
#include <gtest/gtest.h>
#include <signal.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "arch/platform.h"
#include "background_vm.h"
#include "guest_env.h"
#include "snapshot/reader.h"
#include "snapshot/writer.h"
#include "state/external_ram.h"
#include "state/snapshot_state.h"

namespace snapvm {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace http = boost::beast::http;
namespace fs = std::filesystem;

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
pid_t start_vmm(const std::string& sock, const std::string& console, const std::string& errors,
                const std::string& extra_args = "") {
  ::unlink(sock.c_str());
  pid_t pid = ::fork();
  if (pid == 0) {
    std::string bin = test::snapvm_binary();
    std::string cmd = "exec " + bin + " firecracker --api-sock " + sock + " --id kvm-test " + extra_args + " >" +
                      console + " 2>" + errors;
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  struct stat st {};
  for (int i = 0; i < 200 && ::stat(sock.c_str(), &st) != 0; ++i) std::this_thread::sleep_for(50ms);
  return pid;
}

// The test guest as a boot-source body.
json boot_source(const std::string& extra_args = "") {
  return {{"kernel_image_path", test::guest_kernel()},
          {"initrd_path", test::guest_initrd()},
          {"boot_args", std::string(arch::default_cmdline()) + extra_args}};
}

void stop_vmm(pid_t vmm) {
  ::kill(vmm, SIGTERM);
  int status = 0;
  ::waitpid(vmm, &status, 0);
}

bool wait_for(const std::string& path, const std::string& text, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (test::read_text(path).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// After a drive swap: the guest saw the capacity change (config interrupt)
// and reads the new image; `expected` is its first 4 bytes and its size in
// sectors, as "BBBB\n4096\n".
void expect_guest_sees_image(const std::string& vsock, const std::string& expected) {
  test::Output seen;
  for (int i = 0; i < 50 && seen.out != expected; ++i) {
    std::this_thread::sleep_for(100ms);
    seen = test::run(vsock, {"sh", "-c", "echo 3 > /proc/sys/vm/drop_caches; head -c 4 /dev/vda; echo; cat /sys/block/vda/size"});
    if (!seen.error.empty() && !test::worth_retrying(seen)) break;
  }
  EXPECT_EQ(seen.out, expected) << seen.error << seen.err;
}

// SendCtrlAltDel: the guest's init sees the power button, stops its
// processes, syncs and powers off, and the VMM process ends with status 0.
void shut_down_with_ctrl_alt_del(const std::string& sock, pid_t vmm, const std::string& console) {
  auto pressed = put(sock, "/actions", {{"action_type", "SendCtrlAltDel"}});
  EXPECT_EQ(pressed.status, 204) << pressed.body;
  int status = -1;
  for (int i = 0; i < 1200 && ::waitpid(vmm, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(100ms);
  if (status == -1) {
    ADD_FAILURE() << "the guest did not shut down within 120 s of SendCtrlAltDel: " << test::read_text(console);
    stop_vmm(vmm);
    return;
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const std::string out = test::read_text(console);
  EXPECT_NE(out.find("SNAPVM-GUEST-SHUTDOWN power button"), std::string::npos) << out;
  EXPECT_NE(out.find("filesystems synced, powering off"), std::string::npos) << out;
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
  EXPECT_EQ(put(sock, "/boot-source", boot_source())
                .status,
            204);
  EXPECT_EQ(put(sock, "/vsock", {{"guest_cid", 3}, {"uds_path", vsock}}).status, 204);
  // Kata's way with container disks: a placeholder drive, swapped for the
  // real image once the VM runs (PATCH /drives).
  const std::string placeholder = "/tmp/fc-drive-a.img", image = "/tmp/fc-drive-b.img";
  ASSERT_EQ(std::system(("printf AAAA > " + placeholder + " && truncate -s 1M " + placeholder).c_str()), 0);
  ASSERT_EQ(std::system(("printf BBBB > " + image + " && truncate -s 2M " + image).c_str()), 0);
  EXPECT_EQ(put(sock, "/drives/data", {{"drive_id", "data"}, {"path_on_host", placeholder}, {"is_root_device", false},
                                      {"is_read_only", true}})
                .status,
            204);
  auto config = json::parse(request(sock, http::verb::get, "/vm/config").body, nullptr, false);
  EXPECT_EQ(config["machine-config"]["vcpu_count"], 2);
  EXPECT_EQ(config["vsock"]["uds_path"], vsock);

  auto started = put(sock, "/actions", {{"action_type", "InstanceStart"}});
  ASSERT_EQ(started.status, 204) << started.body << test::read_text(errors);
  EXPECT_EQ(state_of(sock), "Running");
  ASSERT_TRUE(wait_for(console, "SNAPVM-GUEST-READY", 600s)) << test::read_text(console) << test::read_text(errors);

  auto hello = test::run(vsock, {"echo", "hello through the hybrid vsock"});
  EXPECT_EQ(hello.out, "hello through the hybrid vsock\n") << hello.error;

  auto before = test::run(vsock, {"sh", "-c", "head -c 4 /dev/vda; echo; cat /sys/block/vda/size"});
  EXPECT_EQ(before.out, "AAAA\n2048\n") << before.error << before.err;
  auto swapped = patch(sock, "/drives/data", {{"drive_id", "data"}, {"path_on_host", image}});
  EXPECT_EQ(swapped.status, 204) << swapped.body;
  // The guest saw the capacity change (config interrupt) and reads the new image.
  expect_guest_sees_image(vsock, "BBBB\n4096\n");
  EXPECT_EQ(patch(sock, "/drives/data", {{"drive_id", "data"}, {"path_on_host", "/nonexistent.img"}}).status, 400);
  EXPECT_EQ(json::parse(request(sock, http::verb::get, "/vm/config").body)["drives"][0]["path_on_host"], image);

  auto late = put(sock, "/machine-config", {{"vcpu_count", 1}, {"mem_size_mib", 128}});
  EXPECT_EQ(late.status, 400);
  EXPECT_NE(late.body.find("after starting"), std::string::npos) << late.body;
  EXPECT_EQ(put(sock, "/snapshot/create", {{"snapshot_path", "/tmp/fc.snap"}, {"mem_file_path", "/tmp/fc.mem"}}).status,
            400);  // only while paused

  ASSERT_EQ(patch(sock, "/vm", {{"state", "Paused"}}).status, 204);
  EXPECT_EQ(state_of(sock), "Paused");
  auto untracked = put(sock, "/snapshot/create",
                       {{"snapshot_type", "Diff"}, {"snapshot_path", "/tmp/fc.snap"}, {"mem_file_path", "/tmp/fc.mem"}});
  EXPECT_EQ(untracked.status, 400);  // no track_dirty_pages in the machine config
  EXPECT_NE(untracked.body.find("dirty"), std::string::npos) << untracked.body;
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

  ASSERT_EQ(patch(sock, "/vm", {{"state", "Paused"}}).status, 204);
  EXPECT_EQ(put(sock, "/actions", {{"action_type", "SendCtrlAltDel"}}).status, 400);  // paused: nobody to hear it
  ASSERT_EQ(patch(sock, "/vm", {{"state", "Resumed"}}).status, 204);
  shut_down_with_ctrl_alt_del(sock, vmm, console);
}

TEST(Firecracker, ConfigFileBootsAtOnceAsKataStartsIt) {
  const std::string sock = "/tmp/fc-cfg.sock", vsock = "/tmp/fc-cfg.vsock", console = "/tmp/fc-cfg-console.log",
                    errors = "/tmp/fc-cfg-errors.log", config = "/tmp/fc-config.json";
  ::unlink(vsock.c_str());
  json doc = {{"boot-source", boot_source()},
              {"machine-config", {{"vcpu_count", 1}, {"mem_size_mib", 256}, {"smt", false}}},
              {"drives", json::array()},
              {"network-interfaces", json::array()},
              {"vsock", {{"guest_cid", 3}, {"uds_path", vsock}}}};
  ASSERT_EQ(std::system(("echo '" + doc.dump() + "' > " + config).c_str()), 0);
  pid_t vmm = start_vmm(sock, console, errors, "--config-file " + config);
  ASSERT_TRUE(wait_for(console, "SNAPVM-GUEST-READY", 600s)) << test::read_text(errors);
  EXPECT_EQ(state_of(sock), "Running");
  EXPECT_EQ(test::run(vsock, {"echo", "configured from a file"}).out, "configured from a file\n");
  auto late = put(sock, "/boot-source", {{"kernel_image_path", "/k"}});
  EXPECT_EQ(late.status, 400);
  stop_vmm(vmm);
}

// `snapvm jail ... -- firecracker`: the API socket is made inside the jail
// (Firecracker's default /run/firecracker.socket, its directory made by the
// jailer), and every path in API bodies is the jail's: the kernel and initrd
// given with --file, the vsock socket and the log file the VMM creates.
TEST(Firecracker, JailedApiBootsWithEveryPathInsideTheJail) {
  const std::string jails = "/tmp/jails", root = jails + "/fcjail/root", console = "/tmp/fc-jail-console.log",
                    errors = "/tmp/fc-jail-errors.log", sock = root + "/run/firecracker.socket";
  pid_t jailer = ::fork();
  if (jailer == 0) {
    std::string cmd = "exec " + test::snapvm_binary() + " jail --id fcjail --uid 1000 --gid 1000 --root " + jails +
                      " --file " + test::guest_kernel() + ":/vmlinuz --file " + test::guest_initrd() +
                      ":/initrd -- firecracker --id jailed >" + console + " 2>" + errors;
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  struct stat st {};
  for (int i = 0; i < 600 && ::stat(sock.c_str(), &st) != 0; ++i) std::this_thread::sleep_for(50ms);
  ASSERT_EQ(::stat(sock.c_str(), &st), 0) << test::read_text(errors);
  EXPECT_EQ(st.st_uid, 1000u) << "the socket is the jailed VMM's";

  // A link planted in the jail where the client names a new metrics file
  // is refused, and its target is not created.
  ASSERT_EQ(::symlink("/planted", (root + "/metrics.json").c_str()), 0);
  auto planted = put(sock, "/metrics", {{"metrics_path", "/metrics.json"}});
  EXPECT_EQ(planted.status, 400);
  EXPECT_NE(planted.body.find("symbolic link"), std::string::npos) << planted.body;
  EXPECT_FALSE(fs::exists(root + "/planted"));
  // Paths outside the jail do not exist for the VMM.
  auto outside = put(sock, "/boot-source", {{"kernel_image_path", test::guest_kernel()}});
  EXPECT_EQ(outside.status, 204);  // checked at InstanceStart
  EXPECT_EQ(put(sock, "/actions", {{"action_type", "InstanceStart"}}).status, 400);

  EXPECT_EQ(put(sock, "/logger", {{"log_path", "/fc.log"}, {"level", "Info"}}).status, 204);
  EXPECT_EQ(put(sock, "/machine-config", {{"vcpu_count", 1}, {"mem_size_mib", 256}}).status, 204);
  json boot = boot_source();
  boot["kernel_image_path"] = "/vmlinuz";
  boot["initrd_path"] = "/initrd";
  EXPECT_EQ(put(sock, "/boot-source", boot).status, 204);
  EXPECT_EQ(put(sock, "/vsock", {{"guest_cid", 3}, {"uds_path", "/v.sock"}}).status, 204);
  auto started = put(sock, "/actions", {{"action_type", "InstanceStart"}});
  ASSERT_EQ(started.status, 204) << started.body << test::read_text(errors);
  ASSERT_TRUE(wait_for(console, "SNAPVM-GUEST-READY", 600s)) << test::read_text(console) << test::read_text(errors);
  EXPECT_EQ(test::run(root + "/v.sock", {"echo", "jailed firecracker"}).out, "jailed firecracker\n");
  EXPECT_TRUE(fs::exists(root + "/fc.log"));

  ::kill(jailer, SIGTERM);
  int status = 0;
  ::waitpid(jailer, &status, 0);
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_FALSE(fs::exists(jails + "/fcjail")) << "the jail was left behind";
}

TEST(Firecracker, TheProcessEndsWhenTheGuestPowersOff) {
  const std::string sock = "/tmp/fc-off.sock", console = "/tmp/fc-off-console.log", errors = "/tmp/fc-off-errors.log";
  pid_t vmm = start_vmm(sock, console, errors);
  ASSERT_GT(vmm, 0);
  ASSERT_EQ(put(sock, "/boot-source", boot_source(" snapvm.poweroff"))
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

namespace snapvm {
namespace {

std::string page_server_binary() {
  std::string bin = test::snapvm_binary();
  return bin.substr(0, bin.rfind('/') + 1) + "snapvm-test-page-server";
}

uint64_t allocated_bytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

// A guest booted through the API with dirty-page tracking and files of
// random bytes in its RAM (tmpfs), saved as Firecracker users chain them: a
// Full snapshot, more writes, a Diff, and the Diff's memory laid over the
// Full's (rebase-mem). The state and memory left are the guest at the Diff.
struct SavedGuest {
  std::string state = "/tmp/fc-snap.state", mem = "/tmp/fc-snap.mem";
  // md5sum: a content check, and busybox's quickest digest under emulation.
  std::string check = "md5sum < /tmp/r && md5sum < /tmp/r2";  // run in the guest; prints `digests`
  std::string digests;
};

SavedGuest boot_fill_and_save() {
  SavedGuest g;
  const std::string sock = "/tmp/fc-save.sock", vsock = "/tmp/fc-save.vsock", console = "/tmp/fc-save-console.log",
                    errors = "/tmp/fc-save-errors.log", full_state = "/tmp/fc-full.state";
  ::unlink(vsock.c_str());
  pid_t vmm = start_vmm(sock, console, errors);
  EXPECT_EQ(put(sock, "/machine-config", {{"vcpu_count", 2}, {"mem_size_mib", 256}, {"track_dirty_pages", true}}).status,
            204);
  EXPECT_EQ(put(sock, "/boot-source", boot_source()).status, 204);
  EXPECT_EQ(put(sock, "/vsock", {{"guest_cid", 3}, {"uds_path", vsock}}).status, 204);
  EXPECT_EQ(std::system("printf AAAA > /tmp/fc-save-a.img && truncate -s 1M /tmp/fc-save-a.img"), 0);
  EXPECT_EQ(put(sock, "/drives/data", {{"drive_id", "data"}, {"path_on_host", "/tmp/fc-save-a.img"},
                                      {"is_root_device", false}, {"is_read_only", true}})
                .status,
            204);
  auto started = put(sock, "/actions", {{"action_type", "InstanceStart"}});
  EXPECT_EQ(started.status, 204) << started.body << test::read_text(errors);
  EXPECT_TRUE(wait_for(console, "SNAPVM-GUEST-READY", 600s)) << test::read_text(errors);
  auto fill = test::run(vsock, {"sh", "-c", "head -c 24000000 /dev/urandom > /tmp/r && echo filled"});
  EXPECT_EQ(fill.out, "filled\n") << fill.error << fill.err;
  EXPECT_EQ(patch(sock, "/vm", {{"state", "Paused"}}).status, 204);
  auto created = put(sock, "/snapshot/create", {{"snapshot_path", full_state}, {"mem_file_path", g.mem}});
  EXPECT_EQ(created.status, 204) << created.body;
  EXPECT_EQ(patch(sock, "/vm", {{"state", "Resumed"}}).status, 204);

  auto more = test::run(vsock, {"sh", "-c", "head -c 4000000 /dev/urandom > /tmp/r2 && " + g.check});
  g.digests = more.out;
  EXPECT_GE(g.digests.size(), 2 * 32u) << more.error << more.err;
  EXPECT_EQ(patch(sock, "/vm", {{"state", "Paused"}}).status, 204);
  const std::string diff_mem = "/tmp/fc-diff.mem";
  auto diff = put(sock, "/snapshot/create",
                  {{"snapshot_type", "Diff"}, {"snapshot_path", g.state}, {"mem_file_path", diff_mem}});
  EXPECT_EQ(diff.status, 204) << diff.body;
  stop_vmm(vmm);

  // The Diff holds the pages written since the Full (the 4 MB file, page
  // tables, the agent's buffers), not the 24 MB before it.
  const uint64_t full_bytes = allocated_bytes(g.mem), diff_bytes = allocated_bytes(diff_mem);
  EXPECT_GT(diff_bytes, 4'000'000u);
  EXPECT_LT(diff_bytes, full_bytes / 3) << "full " << full_bytes << " diff " << diff_bytes;
  std::printf("FIGURE Diff memory file: %.1f MiB of data, the Full's %.1f MiB\n", diff_bytes / 1048576.0,
              full_bytes / 1048576.0);
  auto rebased = test::snapvm_cli("rebase-mem --base-file " + g.mem + " --diff-file " + diff_mem);
  EXPECT_EQ(rebased.rc, 0) << rebased.out;
  return g;
}

// Loads the saved guest into a fresh `snapvm firecracker` and checks that it
// carries on: the agent answers through the overridden vsock, and the bytes
// it wrote before the snapshot are intact.
void load_and_check(const SavedGuest& g, const json& mem_backend, const std::string& tag) {
  const std::string sock = "/tmp/fc-load-" + tag + ".sock", vsock = "/tmp/fc-load-" + tag + ".vsock",
                    console = "/tmp/fc-load-" + tag + "-console.log", errors = "/tmp/fc-load-" + tag + "-errors.log";
  ::unlink(vsock.c_str());
  pid_t vmm = start_vmm(sock, console, errors);
  // Configuring anything first makes a load impossible: a fresh process only.
  auto t0 = std::chrono::steady_clock::now();
  auto loaded = put(sock, "/snapshot/load", {{"snapshot_path", g.state}, {"mem_backend", mem_backend},
                                             {"resume_vm", true}, {"vsock_override", {{"uds_path", vsock}}}});
  auto t1 = std::chrono::steady_clock::now();
  ASSERT_EQ(loaded.status, 204) << loaded.body << test::read_text(errors);
  EXPECT_EQ(state_of(sock), "Running");
  // Served page by page from another process under emulation, the first
  // answer can take longer than the agent client's 10 s connect wait.
  test::Output check;
  for (int attempt = 0; attempt < 12; ++attempt) {
    check = test::run(vsock, {"sh", "-c", g.check});
    if (!test::worth_retrying(check)) break;
  }
  EXPECT_EQ(check.out, g.digests) << tag << ": " << check.error << test::read_text(errors);
  auto t2 = std::chrono::steady_clock::now();
  std::printf("FIGURE snapshot/load (%s): %.1f ms to the response, %.1f ms to the guest's answer over the agent\n",
              tag.c_str(), std::chrono::duration<double, std::milli>(t1 - t0).count(),
              std::chrono::duration<double, std::milli>(t2 - t0).count());
  EXPECT_EQ(put(sock, "/snapshot/load", {{"snapshot_path", g.state}, {"mem_backend", mem_backend}}).status, 400);
  if (tag == "file") {
    // The snapshot's drive keeps its id: a client swaps it as before.
    auto config = json::parse(request(sock, http::verb::get, "/vm/config").body, nullptr, false);
    EXPECT_EQ(config["drives"][0]["drive_id"], "data") << config.dump();
    EXPECT_EQ(std::system("printf BBBB > /tmp/fc-save-b.img && truncate -s 2M /tmp/fc-save-b.img"), 0);
    auto swapped = patch(sock, "/drives/data", {{"drive_id", "data"}, {"path_on_host", "/tmp/fc-save-b.img"}});
    EXPECT_EQ(swapped.status, 204) << swapped.body;
    expect_guest_sees_image(vsock, "BBBB\n4096\n");
    // The power button's programming came back with the snapshot.
    shut_down_with_ctrl_alt_del(sock, vmm, console);
  } else {
    stop_vmm(vmm);
  }
}

// The page server as its own process; its report (stdout) goes to `report`.
pid_t start_page_server(const std::string& sock, const std::string& mem, bool prefetch, const std::string& report,
                        const std::string& extra_args = "") {
  ::unlink(sock.c_str());
  pid_t pid = ::fork();
  if (pid == 0) {
    std::string cmd = "exec " + page_server_binary() + " " + sock + " " + mem + (prefetch ? " --prefetch" : "") + " " +
                      extra_args + " >" + report + " 2>&1";
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  wait_for(report, "listening", 30s);
  return pid;
}

TEST(Firecracker, SnapshotCreateThenLoadFromTheMemoryFileAndFromUffdPageServers) {
  SavedGuest g = boot_fill_and_save();
  ASSERT_FALSE(HasFailure());
  auto inspect = test::snapvm_cli("inspect " + g.state);
  EXPECT_NE(inspect.out.find("separate memory file"), std::string::npos) << inspect.out;

  load_and_check(g, {{"backend_type", "File"}, {"backend_path", g.mem}}, "file");

  for (bool prefetch : {false, true}) {
    const std::string uffd_sock = "/tmp/fc-uffd.sock", report = "/tmp/fc-uffd-report.txt";
    pid_t server = start_page_server(uffd_sock, g.mem, prefetch, report);
    load_and_check(g, {{"backend_type", "Uffd"}, {"backend_path", uffd_sock}}, prefetch ? "prefetch" : "uffd");
    int status = 0;
    ::waitpid(server, &status, 0);  // ends when the VMM's connection closes
    std::string served = test::read_text(report);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << served;
    EXPECT_NE(served.find("served"), std::string::npos) << served;
    EXPECT_EQ(served.find("served 0 faults"), std::string::npos) << served;
    std::printf("FIGURE %s", served.substr(served.find("page-server: served")).c_str());
  }

  // A page server that stops serving: the VMM ends with one line (exit 70)
  // once faults have waited unread for --page-fault-timeout, instead of
  // hanging with its vCPUs.
  {
    const std::string uffd_sock = "/tmp/fc-stall.sock", report = "/tmp/fc-stall-report.txt",
                      sock = "/tmp/fc-stall-api.sock", errors = "/tmp/fc-stall-errors.log";
    pid_t server = start_page_server(uffd_sock, g.mem, false, report, "--stall-after 30");
    pid_t vmm = start_vmm(sock, "/tmp/fc-stall-console.log", errors, "--page-fault-timeout 2");
    // The load may answer, or the stall may come while it runs: either way
    // the process has to end.
    auto load = std::async(std::launch::async, [&] {
      return put(sock, "/snapshot/load", {{"snapshot_path", g.state},
                                          {"mem_backend", {{"backend_type", "Uffd"}, {"backend_path", uffd_sock}}},
                                          {"resume_vm", true}, {"vsock_override", {{"uds_path", "/tmp/fc-stall.vsock"}}}});
    });
    int status = -1;
    for (int i = 0; i < 1800 && ::waitpid(vmm, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(100ms);
    if (status == -1) {
      ADD_FAILURE() << "the VMM still runs 180 s after its page server stalled: " << test::read_text(errors);
      stop_vmm(vmm);
    } else {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 70) << status << " " << test::read_text(errors);
      const std::string said = test::read_text(errors);
      EXPECT_NE(said.find("snapvm: the page server at " + uffd_sock + " has left guest memory faults unread for"),
                std::string::npos)
          << said;
    }
    load.wait();
    ::waitpid(server, &status, 0);  // ends when the VMM's connection closes
    EXPECT_NE(test::read_text(report).find("served 30 faults"), std::string::npos) << test::read_text(report);
  }

  // The page server gets the userfaultfd (power over the whole VMM) only
  // for a state that passed every check needing no guest RAM: a state
  // whose saved devices do not match its machine is refused, and nothing
  // connected to the page server's socket.
  {
    auto saved = SnapshotFile::open(g.state);
    ASSERT_TRUE(saved) << saved.error().describe();
    auto st = state::load_state(*saved);
    ASSERT_TRUE(st) << st.error().describe();
    bool tampered = false;
    for (auto& d : st->devices) {
      if (!tampered && d.transport && d.transport->device_id == 2) {  // the data drive, now "an rng"
        d.transport->device_id = 4;
        tampered = true;
      }
    }
    ASSERT_TRUE(tampered);
    ASSERT_TRUE(write_full("/tmp/fc-tampered.state", state::to_contents(*st), {}));
    const std::string pager = "/tmp/fc-never.sock";
    ::unlink(pager.c_str());
    int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", pager.c_str());
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener, 4), 0);
    const std::string sock = "/tmp/fc-tampered-api.sock", errors = "/tmp/fc-tampered-errors.log";
    pid_t vmm = start_vmm(sock, "/tmp/fc-tampered-console.log", errors);
    auto refused = put(sock, "/snapshot/load", {{"snapshot_path", "/tmp/fc-tampered.state"},
                                                {"mem_backend", {{"backend_type", "Uffd"}, {"backend_path", pager}}}});
    EXPECT_EQ(refused.status, 400) << refused.body << "\nthe VMM said: " << test::read_text(errors);
    EXPECT_NE(refused.body.find("holds virtio type 2, the snapshot says 4"), std::string::npos) << refused.body;
    pollfd p{listener, POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 0), 0) << "the VMM connected to the page server for a state it then refused";
    EXPECT_EQ(state_of(sock), "Not started");
    stop_vmm(vmm);
    ::close(listener);
  }

  // The same pair converted to one snapvm file restores natively too.
  auto joined = test::snapvm_cli("convert --to snapvm " + g.state + " " + g.mem + " /tmp/fc-joined.snap");
  EXPECT_EQ(joined.rc, 0) << joined.out;
  EXPECT_EQ(test::snapvm_cli("verify -q /tmp/fc-joined.snap").rc, 0);

  // A corrupt state file is one fault, and the VMM stays healthy.
  {
    const std::string sock = "/tmp/fc-bad.sock";
    pid_t vmm = start_vmm(sock, "/tmp/fc-bad-console.log", "/tmp/fc-bad-errors.log");
    auto bad = put(sock, "/snapshot/load", {{"snapshot_path", g.mem}, {"mem_backend", {{"backend_type", "File"},
                                                                                      {"backend_path", g.mem}}}});
    EXPECT_EQ(bad.status, 400);
    EXPECT_FALSE(bad.fault().value("fault_message", "").empty()) << bad.body;
    EXPECT_EQ(state_of(sock), "Not started");

    // Another architecture's state file (with its memory file): refused by name.
    const format::Arch other =
        arch::snapshot_arch() == format::Arch::kArm64 ? format::Arch::kX86_64 : format::Arch::kArm64;
    state::SnapshotState foreign;
    foreign.arch = other;
    foreign.machine.vcpu_count = 1;
    foreign.machine.memory.push_back({0x4000'0000, 64 << 10});
    foreign.vcpus.push_back({});
    foreign.external_ram = state::external_ram_for({{0x4000'0000, 64 << 10}});
    ASSERT_TRUE(write_full("/tmp/fc-foreign.state", state::to_contents(foreign), {}));
    ASSERT_EQ(std::system("truncate -s 64K /tmp/fc-foreign.mem"), 0);
    auto refused = put(sock, "/snapshot/load", {{"snapshot_path", "/tmp/fc-foreign.state"},
                                                {"mem_backend", {{"backend_type", "File"},
                                                                 {"backend_path", "/tmp/fc-foreign.mem"}}}});
    EXPECT_EQ(refused.status, 400);
    EXPECT_NE(refused.body.find(std::string(format::arch_name(other)) + " snapshot"), std::string::npos)
        << refused.body;
    EXPECT_EQ(state_of(sock), "Not started");
    stop_vmm(vmm);
  }
}

}  // namespace
}  // namespace snapvm
