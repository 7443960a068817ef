// The control socket and its CLI, end to end: a VM started by `snapvm run`
// is paused, snapshotted, inspected, verified and resumed from other
// processes, as a user would.
// Boots with `snapvm run`: the test is that command's control socket, from
// the first instruction on.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "guest_env.h"

namespace snapvm {
namespace {

using namespace std::chrono_literals;

test::CliResult sh(const std::string& args) { return test::snapvm_cli(args); }

std::string slurp(const std::string& path) { return test::read_text(path); }

TEST(Control, PauseSnapshotInspectVerifyResumeFromTheCommandLine) {
  const std::string api = "/tmp/ctl.sock", vsock = "/tmp/ctl.vsock", console = "/tmp/ctl-console.log";
  ::unlink(console.c_str());
  pid_t vmm = ::fork();
  ASSERT_GE(vmm, 0);
  if (vmm == 0) {
    std::string bin = test::snapvm_binary(), k = test::guest_kernel(), i = test::guest_initrd();
    ::execl(bin.c_str(), bin.c_str(), "run", "--kernel", k.c_str(), "--initrd", i.c_str(), "--mem", "256M", "--cpus",
            "2", "--api", api.c_str(), "--vsock", vsock.c_str(), "--console", console.c_str(), "--publish", "0:1024",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + 600s;
  while (slurp(console).find("SNAPVM-GUEST-READY") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_NE(slurp(console).find("SNAPVM-GUEST-READY"), std::string::npos) << slurp(console);

  auto info = sh("info --json " + api);
  EXPECT_EQ(info.rc, 0) << info.out;
  EXPECT_NE(info.out.find("\"state\": \"running\""), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("\"guest_port\": 1024"), std::string::npos) << info.out;

  auto pause = sh("pause " + api);
  EXPECT_EQ(pause.rc, 0) << pause.out;
  auto paused = sh("info --json " + api).out;
  EXPECT_NE(paused.find("\"state\": \"paused\""), std::string::npos) << paused;
  // What a report of a hung guest needs: where both vCPUs are (readable only
  // paused) and how each virtio device stands with its driver.
#if defined(__aarch64__)
  EXPECT_NE(paused.find("\"vCPU 1: pc=0x"), std::string::npos) << paused;
#else
  EXPECT_NE(paused.find("\"vCPU 1: rip=0x"), std::string::npos) << paused;
#endif
  EXPECT_NE(paused.find("vsock: no transport reset outstanding"), std::string::npos) << paused;
  EXPECT_NE(paused.find("virtio type 19: status 0xf"), std::string::npos) << paused;
  EXPECT_EQ(info.out.find("vcpus_at"), std::string::npos) << "registers are read only while paused";

  auto snap = sh("snapshot " + api + " /tmp/ctl.snap --resume");
  ASSERT_EQ(snap.rc, 0) << snap.out;
  EXPECT_NE(snap.out.find("now running"), std::string::npos) << snap.out;
  auto inspect = sh("inspect /tmp/ctl.snap");
  EXPECT_EQ(inspect.rc, 0) << inspect.out;
  EXPECT_NE(inspect.out.find("2 vCPU(s), 256.0 MiB RAM"), std::string::npos) << inspect.out;
  EXPECT_NE(inspect.out.find("virtio-vsock"), std::string::npos) << inspect.out;
  EXPECT_NE(inspect.out.find("-> guest vsock port 1024"), std::string::npos) << inspect.out;
  auto verify = sh("verify /tmp/ctl.snap");
  EXPECT_EQ(verify.rc, 0) << verify.out;

  // Running again: the agent answers.
  auto exec = sh("exec " + vsock + " -- echo resumed");
  EXPECT_EQ(exec.rc, 0) << exec.out;
  EXPECT_EQ(exec.out, "resumed\n");

  auto bad = sh("snapshot " + api + " /nonexistent-dir/x.snap");
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.out.find("/nonexistent-dir"), std::string::npos) << bad.out;
  auto unknown = sh("info /tmp/no-such-vm.sock");
  EXPECT_EQ(unknown.rc, 1);
  EXPECT_NE(unknown.out.find("is the VM running?"), std::string::npos) << unknown.out;

  ::kill(vmm, SIGTERM);
  int status = 0;
  ::waitpid(vmm, &status, 0);
}

}  // namespace
}  // namespace snapvm
