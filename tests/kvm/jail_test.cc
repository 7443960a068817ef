// snapvm jail on a real kernel: the confined VMM boots the test guest, runs
// as its own uid in its own namespaces, sees only its files, is held by its
// cgroup limits, and leaves nothing behind.
// Boots inside the jail: the confined VMM's own start is what is tested.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "background_vm.h"
#include "guest_env.h"

namespace snapvm {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

const std::string kJails = "/tmp/jails";

// Starts `snapvm jail ... -- run ...` in the background.
pid_t start_jailed(const std::string& id, const std::vector<std::string>& limits, const std::string& mem,
                   const std::string& stderr_log = "/tmp/jailer.log") {
  std::vector<std::string> args = {test::snapvm_binary(), "jail", "--id", id, "--uid", "1000", "--gid", "1000",
                                   "--root", kJails, "--file", test::guest_kernel() + ":/vmlinuz",
                                   "--file", test::guest_initrd() + ":/initrd"};
  args.insert(args.end(), limits.begin(), limits.end());
  for (const char* a : {"--", "run", "--kernel", "/vmlinuz", "--initrd", "/initrd", "--cpus", "2", "--vsock",
                        "/vm.vsock", "--api", "/vm.sock", "--console", "/console.log", "--mem"}) {
    args.push_back(a);
  }
  args.push_back(mem);
  return test::spawn_logged(std::move(args), stderr_log);
}

bool wait_for_text(const std::string& path, const std::string& text, std::chrono::seconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (test::read_text(path).find(text) == std::string::npos) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(100ms);
  }
  return true;
}

std::string field(const std::string& text, const std::string& key) {
  auto at = text.find(key);
  if (at == std::string::npos) return "";
  auto end = text.find('\n', at);
  return text.substr(at + key.size(), end - at - key.size());
}

TEST(Jail, ConfinedVmmBootsSeesOnlyItsFilesAndLeavesNothingBehind) {
  const std::string root = kJails + "/boot/root", cgroup = "/sys/fs/cgroup/snapvm/boot";
  // Left open across exec, as a careless parent leaves descriptors: the
  // jailer must not hand it to the VMM.
  const std::string marker = "/tmp/jail-inherited-marker";
  int inherited = ::open(marker.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(inherited, 0);
  pid_t jailer = start_jailed("boot", {"--memory", "768M", "--pids", "64", "--cpus", "1.5"}, "256M");
  ::close(inherited);
  ASSERT_TRUE(wait_for_text(root + "/console.log", "SNAPVM-GUEST-READY", 600s)) << test::read_text(root + "/console.log");
  auto echo = test::run(root + "/vm.vsock", {"echo", "jailed"});
  ASSERT_TRUE(echo.error.empty()) << echo.error;
  EXPECT_EQ(echo.out, "jailed\n");

  std::string procs = test::read_text(cgroup + "/cgroup.procs");
  ASSERT_FALSE(procs.empty()) << "no process in the VM's cgroup";
  std::string vmm = "/proc/" + procs.substr(0, procs.find('\n'));
  std::string status = test::read_text(vmm + "/status");
  EXPECT_EQ(field(status, "Uid:\t"), "1000\t1000\t1000\t1000") << status;
  EXPECT_EQ(field(status, "Gid:\t"), "1000\t1000\t1000\t1000") << status;
  EXPECT_EQ(field(status, "NoNewPrivs:\t"), "1");
  EXPECT_EQ(field(status, "CapEff:\t"), "0000000000000000");
  EXPECT_EQ(field(status, "NSpid:\t").substr(field(status, "NSpid:\t").rfind('\t') + 1), "1") << "PID 1 of its namespace";
  // Nothing inherited but stdin, stdout and stderr; and a session of its own.
  for (const auto& e : fs::directory_iterator(vmm + "/fd")) {
    if (std::stoi(e.path().filename()) <= 2) continue;
    std::error_code ec;
    const std::string target = fs::read_symlink(e.path(), ec).string();
    EXPECT_NE(target, marker) << "the VMM holds the jailer's parent's descriptor " << e.path();
    EXPECT_NE(target, "/tmp/jailer.log") << e.path();
  }
  std::string stat = test::read_text(vmm + "/stat");
  std::istringstream after_name(stat.substr(stat.rfind(')') + 2));
  std::string state, ppid, pgrp, session;
  after_name >> state >> ppid >> pgrp >> session;
  EXPECT_EQ(session, procs.substr(0, procs.find('\n'))) << "the VMM leads no session of its own: " << stat;
  for (const char* ns : {"mnt", "pid", "net", "ipc", "uts"}) {
    EXPECT_NE(fs::read_symlink(vmm + "/ns/" + ns), fs::read_symlink(std::string("/proc/self/ns/") + ns)) << ns;
  }
  // Its whole file system: what it was given, its devices, its sockets.
  std::set<std::string> seen;
  for (const auto& e : fs::directory_iterator(vmm + "/root")) seen.insert(e.path().filename());
  EXPECT_EQ(seen, (std::set<std::string>{"console.log", "dev", "initrd", "vm.sock", "vm.vsock", "vmlinuz"}));
  std::set<std::string> devices;
  for (const auto& e : fs::directory_iterator(vmm + "/root/dev")) devices.insert(e.path().filename());
  EXPECT_EQ(devices, (std::set<std::string>{"kvm", "null"}));
  std::string limits = test::read_text(vmm + "/limits");
  EXPECT_NE(limits.find("Max core file size        0                    0"), std::string::npos) << limits;
  EXPECT_NE(limits.find("Max open files            4096                 4096"), std::string::npos) << limits;
  EXPECT_EQ(test::read_text(cgroup + "/memory.max"), "805306368\n");
  EXPECT_EQ(test::read_text(cgroup + "/pids.max"), "64\n");
  EXPECT_EQ(test::read_text(cgroup + "/cpu.max"), "150000 100000\n");

  // Control through the socket in the jail, then a stop from the host.
  EXPECT_EQ(test::snapvm_cli("info " + root + "/vm.sock").rc, 0);
  ::kill(jailer, SIGTERM);
  int st = 0;
  ::waitpid(jailer, &st, 0);
  EXPECT_TRUE(WIFEXITED(st)) << "the jailer itself died";
  EXPECT_FALSE(fs::exists(kJails + "/boot")) << "the jail was left behind";
  EXPECT_FALSE(fs::exists(cgroup)) << "the cgroup was left behind";
}

TEST(Jail, MemoryLimitHolds) {
  const std::string root = kJails + "/oom/root";
  pid_t jailer = start_jailed("oom", {"--memory", "160M"}, "512M");
  ASSERT_TRUE(wait_for_text(root + "/console.log", "SNAPVM-GUEST-READY", 600s)) << test::read_text(root + "/console.log");
  // The guest fills 300 MiB of its RAM: more than the VMM may have.
  auto fill = test::run(root + "/vm.vsock", {"sh", "-c", "head -c 300000000 /dev/urandom > /tmp/fill; echo filled"});
  int st = 0;
  ::waitpid(jailer, &st, 0);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 128 + SIGKILL) << "the VMM was not killed at its limit; guest said: " << fill.out;
  EXPECT_NE(fill.out, "filled\n");
  std::string said = test::read_text("/tmp/jailer.log");
  EXPECT_NE(said.find("snapvm jail: the VMM of oom reached its memory limit (167772160 bytes) and the kernel killed it"),
            std::string::npos)
      << said;
  EXPECT_FALSE(fs::exists(kJails + "/oom"));
}

}  // namespace
}  // namespace snapvm
