// A VM's life as a user drives it from the command line: run -d, ps, logs,
// the control socket's event stream, stop (the power button) and kill.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "arch/platform.h"
#include "base/runtime_dir.h"
#include "base/unix_socket.h"
#include "guest_env.h"
#include "vmm/exit_reason.h"

namespace snapvm {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

std::string run_detached_args(const std::string& name) {
  return "run -d --name " + name + " --kernel " + test::guest_kernel() + " --initrd " + test::guest_initrd() +
         " --mem 256M --cpus 2";
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// Waits until `snapvm logs NAME` shows `marker`.
bool wait_for_log(const std::string& name, const std::string& marker, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (test::snapvm_cli("logs " + name).out.find(marker) != std::string::npos) return true;
    std::this_thread::sleep_for(500ms);
  }
  return false;
}

// The client end of an event stream: lines as they come.
class EventStream {
 public:
  explicit EventStream(const std::string& socket) {
    auto fd = connect_unix(socket);
    if (fd) fd_ = std::move(*fd);
    const std::string req = "{\"op\":\"events\"}\n";
    if (fd_.valid()) (void)!::send(fd_.get(), req.data(), req.size(), MSG_NOSIGNAL);
  }
  // The next line as JSON (null at the end of the stream or after `timeout`).
  json next(std::chrono::seconds timeout = 60s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return json::parse(line, nullptr, false);
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{fd_.get(), POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return nullptr;
      char chunk[4096];
      ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
      if (n <= 0) return nullptr;
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }
  // The next event line (skipping none): its "event" field.
  std::string next_event() {
    json j = next();
    return j.is_object() && j.contains("event") ? j["event"].get<std::string>() : j.dump();
  }

 private:
  UniqueFd fd_;
  std::string buf_;
};

TEST(Lifecycle, ADetachedVmIsListedLoggedStreamsItsEventsAndStopsThroughItsPowerButton) {
  const std::string name = "lifecycle1";
  (void)test::snapvm_cli("kill " + name);  // a VM a failed run left
  auto started = test::snapvm_cli(run_detached_args(name), /*stderr_only=*/false, 120);
  ASSERT_EQ(started.rc, 0) << started.out;
  EXPECT_NE(started.out.find(name + "\n"), std::string::npos) << started.out;
  ASSERT_TRUE(wait_for_log(name, "SNAPVM-GUEST-READY", 600s)) << test::snapvm_cli("logs " + name).out;

  auto ps = test::snapvm_cli("ps --json", /*stderr_only=*/false, 60);
  ASSERT_EQ(ps.rc, 0) << ps.out;
  json listed;
  for (const auto& vm : json::parse(ps.out, nullptr, false)) {
    if (vm.value("name", "") == name) listed = vm;
  }
  ASSERT_TRUE(listed.is_object()) << ps.out;
  EXPECT_GT(listed["pid"].get<int>(), 0);
  EXPECT_EQ(listed["state"], "running");
  EXPECT_EQ(listed["vcpus"], 2);
  EXPECT_EQ(listed["mem_bytes"], 256ull << 20);
  EXPECT_EQ(listed["origin"], "kernel " + test::guest_kernel());
  EXPECT_GT(listed["uptime_ms"].get<int64_t>(), 0);
  auto table = test::snapvm_cli("ps");
  EXPECT_NE(table.out.find(name), std::string::npos) << table.out;

  // A second VM of the same name is refused before it takes anything.
  auto twice = test::snapvm_cli(run_detached_args(name), false, 60);
  EXPECT_EQ(twice.rc, 1) << twice.out;
  EXPECT_NE(twice.out.find("a VM named " + name + " is running already"), std::string::npos) << twice.out;

  EventStream events(runtime_path(name + ".sock"));
  json hello = events.next();
  ASSERT_TRUE(hello.is_object()) << hello.dump();
  EXPECT_EQ(hello.value("events", false), true) << hello.dump();
  EXPECT_EQ(hello.value("state", ""), "running");
  ASSERT_EQ(test::snapvm_cli("pause " + name).rc, 0);
  EXPECT_EQ(events.next_event(), "paused");
  ASSERT_EQ(test::snapvm_cli("resume " + name).rc, 0);
  EXPECT_EQ(events.next_event(), "resumed");

  // A snapshot while it runs, and a clone of it in the background: the
  // README's first steps, each through the command line.
  const std::string snap = "/tmp/" + name + ".snap", clone = name + "-clone";
  auto snapshot = test::snapvm_cli("snapshot " + name + " " + snap + " --resume", false, 300);
  ASSERT_EQ(snapshot.rc, 0) << snapshot.out;
  EXPECT_EQ(events.next_event(), "paused");
  json written = events.next();
  EXPECT_EQ(written.value("event", ""), "snapshot") << written.dump();
  EXPECT_EQ(written.value("path", ""), snap) << written.dump();
  EXPECT_EQ(events.next_event(), "resumed");
  auto restored = test::snapvm_cli("restore -d " + snap + " --name " + clone, false, 120);
  ASSERT_EQ(restored.rc, 0) << restored.out;
  auto in_clone = test::snapvm_cli("exec " + clone + " -- cat /proc/cpuinfo", false, 120);
  EXPECT_EQ(in_clone.rc, 0) << in_clone.out << test::snapvm_cli("logs " + clone).out;
  auto clone_ps = test::snapvm_cli("ps --json", false, 60);
  EXPECT_NE(clone_ps.out.find("\"origin\":\"snapshot " + snap + "\""), std::string::npos) << clone_ps.out;
  auto clone_stop = test::snapvm_cli("stop " + clone + " --timeout 120", false, 300);
  EXPECT_EQ(clone_stop.rc, 0) << clone_stop.out;
  EXPECT_NE(clone_stop.out.find(clone + ": the guest shut down"), std::string::npos) << clone_stop.out;
  EXPECT_NE(test::snapvm_cli("logs " + clone).out.find("snapvm: restored " + snap), std::string::npos);
  ::unlink(snap.c_str());

  auto stop = test::snapvm_cli("stop " + name + " --timeout 120", false, 300);
  EXPECT_EQ(stop.rc, 0) << stop.out;
  EXPECT_NE(stop.out.find(name + ": the guest shut down"), std::string::npos) << stop.out;
  EXPECT_EQ(events.next_event(), "shutdown_requested");
  json exited = events.next();
  EXPECT_EQ(exited.value("event", ""), "exited") << exited.dump();
  EXPECT_EQ(exited.value("reason", ""), "power off") << exited.dump();
  EXPECT_EQ(exited.value("status", -1), 0) << exited.dump();
  json end = events.next();
  EXPECT_EQ(end.value("events", true), false) << end.dump();
  EXPECT_TRUE(events.next(5s).is_null()) << "the stream should end with the VM";

  EXPECT_FALSE(exists(runtime_path(name + ".sock")));
  EXPECT_FALSE(exists(runtime_path(name + ".vsock")));
  EXPECT_EQ(test::snapvm_cli("ps --json").out.find("\"" + name + "\""), std::string::npos);
  // The log outlives the VM: its last words are the guest's shutdown.
  auto logs = test::snapvm_cli("logs " + name);
  EXPECT_EQ(logs.rc, 0);
  EXPECT_NE(logs.out.find("SNAPVM-GUEST-SHUTDOWN power button"), std::string::npos) << logs.out;
}

TEST(Lifecycle, KillEndsTheVmmAndRemovesTheSocketsItLeft) {
  const std::string name = "lifecycle2";
  auto started = test::snapvm_cli(run_detached_args(name), false, 120);
  ASSERT_EQ(started.rc, 0) << started.out;
  ASSERT_TRUE(exists(runtime_path(name + ".sock")));
  auto killed = test::snapvm_cli("kill " + name, false, 60);
  EXPECT_EQ(killed.rc, 0) << killed.out;
  EXPECT_FALSE(exists(runtime_path(name + ".sock")));
  EXPECT_FALSE(exists(runtime_path(name + ".vsock")));
  auto gone = test::snapvm_cli("stop " + name);
  EXPECT_EQ(gone.rc, 1);
  EXPECT_NE(gone.out.find("no VM named " + name + " is running"), std::string::npos) << gone.out;
}


// With panic=-1 a panicking kernel resets at once; the VMM tells it from a
// reboot by the kernel's panic line and ends with kExitGuestCrash, naming it.
TEST(Lifecycle, AGuestKernelPanicEndsTheVmmWithTheCrashStatusAndItsLine) {
  const std::string name = "lifecycle3", console = "/tmp/lifecycle3.console", log = "/tmp/lifecycle3.log";
  ::unlink(console.c_str());
  pid_t vmm = test::spawn_logged({test::snapvm_binary(), "run", "--name", name, "--kernel", test::guest_kernel(),
                                  "--initrd", test::guest_initrd(), "--mem", "256M", "--console", console},
                                 log);
  ASSERT_GT(vmm, 0);
  const auto deadline = std::chrono::steady_clock::now() + 600s;
  while (test::read_text(console).find("SNAPVM-GUEST-READY") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline && test::process_state(vmm) == "running") {
    std::this_thread::sleep_for(500ms);
  }
  ASSERT_NE(test::read_text(console).find("SNAPVM-GUEST-READY"), std::string::npos)
      << test::process_state(vmm) << "\n" << test::read_text(log);
  (void)test::snapvm_cli("exec " + name + " -- sh -c 'echo c > /proc/sysrq-trigger'", false, 120);
  int status = 0;
  ASSERT_EQ(::waitpid(vmm, &status, 0), vmm);
  const std::string err = test::read_text(log);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == kExitGuestCrash) << status << "\n" << err;
  EXPECT_NE(err.find("snapvm: the guest crashed (kernel panic: sysrq triggered crash); the VM has stopped"),
            std::string::npos)
      << err;
  EXPECT_FALSE(exists(runtime_path(name + ".sock")));
}

}  // namespace
}  // namespace snapvm
