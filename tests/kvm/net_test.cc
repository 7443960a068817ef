// virtio-net on a tap, end to end with `snapvm run --net` and `snapvm
// restore --net`, inside network namespaces this test makes (the host's own
// network is never touched): the guest gets its address from ip=, pings and
// is pinged, serves HTTP to the host and fetches from it (payloads compared
// by sha256); a snapshot taken while the guest is busy on the network
// restores into two clones on two taps with two MACs, both serving at once.
// Boots with `snapvm run --net`: the guest's first configuration of its
// interface (ip=) is part of what is tested.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "arch/platform.h"
#include "background_vm.h"
#include "guest_env.h"

namespace snapvm {
namespace {

using namespace std::chrono_literals;

// A network namespace for the calling thread (and every process it starts)
// until destroyed; the thread then returns to the one it came from.
class NetNamespace {
 public:
  NetNamespace() : home_(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)) {
    ok_ = home_ >= 0 && ::unshare(CLONE_NEWNET) == 0;
    if (ok_) {
      own_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
      sh("ip link set lo up");
    }
  }
  ~NetNamespace() {
    if (home_ >= 0) {
      ::setns(home_, CLONE_NEWNET);
      ::close(home_);
    }
    if (own_ >= 0) ::close(own_);
  }
  bool ok() const { return ok_; }
  // Runs the calling thread in this namespace until the returned guard goes.
  void enter() const { ::setns(own_, CLONE_NEWNET); }
  void leave() const { ::setns(home_, CLONE_NEWNET); }
  static int sh(const std::string& cmd) { return WEXITSTATUS(std::system(cmd.c_str())); }

 private:
  int home_ = -1, own_ = -1;
  bool ok_ = false;
};

std::string sh_out(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  ::pclose(p);
  return out;
}

bool wait_for_text(const std::string& path, const std::string& text, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (test::read_text(path).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// Waits for the tap the VMM creates, then gives it the host's address.
bool configure_tap(const std::string& tap, const std::string& cidr) {
  for (int i = 0; i < 300; ++i) {
    // Not /sys/class/net: sysfs shows the namespace that mounted it.
    if (NetNamespace::sh("ip link show " + tap + " > /dev/null 2>&1") == 0) {
      return NetNamespace::sh("ip addr add " + cidr + " dev " + tap + " && ip link set " + tap + " up") == 0;
    }
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

void kill_and_wait(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  int status;
  ::waitpid(pid, &status, 0);
}

const std::string kGuestIp = "10.0.2.2", kHostIp = "10.0.2.1";
const std::string kIpArg = " ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off";

// The host fetches a file the guest serves, and the guest one the host
// serves; both checked by sha256. Bounded by `timeout`, not wget's -T, which
// crashes Debian 12's static busybox.
void expect_http_both_ways(const std::string& vsock, const std::string& tag) {
  auto served = test::run(vsock, {"sh", "-c",
                                  "mkdir -p /tmp/www && head -c 3000000 /dev/urandom > /tmp/www/blob && "
                                  "(pgrep httpd >/dev/null || httpd -p 8080 -h /tmp/www </dev/null >/dev/null 2>&1) && "
                                  "sha256sum < /tmp/www/blob"});
  ASSERT_GE(served.out.size(), 64u) << tag << ": " << served.error << served.err;
  // Host-side files per tag: clones run this at the same time.
  const std::string got_path = "/tmp/net-got-" + tag, www = "/tmp/hostwww-" + tag;
  const std::string fetched = sh_out("rm -f " + got_path + " && timeout 30 wget -q -O " + got_path + " http://" +
                                     kGuestIp + ":8080/blob && sha256sum < " + got_path);
  EXPECT_EQ(fetched.substr(0, 64), served.out.substr(0, 64)) << tag << ": host fetching from the guest";

  const std::string host_digest = sh_out("mkdir -p " + www + " && head -c 2000000 /dev/urandom > " + www +
                                         "/blob && sha256sum < " + www + "/blob");
  const std::string pidfile = "/tmp/net-httpd-" + tag + ".pid";
  ASSERT_EQ(NetNamespace::sh("httpd -f -p " + kHostIp + ":8081 -h " + www + " </dev/null >/dev/null 2>&1 & echo $! > " +
                             pidfile),
            0);
  std::this_thread::sleep_for(300ms);
  auto got = test::run(vsock, {"sh", "-c",
                               "timeout 30 wget -q -O /tmp/got http://" + kHostIp + ":8081/blob && sha256sum < /tmp/got"});
  EXPECT_EQ(got.out.substr(0, 64), host_digest.substr(0, 64)) << tag << ": guest fetching from the host: " << got.err;
  kill_and_wait(std::atoi(test::read_text(pidfile).c_str()));
}

TEST(Net, GuestGetsItsAddressPingsAndServesHttpBothWays) {
  NetNamespace ns;
  ASSERT_TRUE(ns.ok()) << "cannot make a network namespace (needs root)";
  const std::string vsock = "/tmp/net.vsock", console = "/tmp/net-console.log", errors = "/tmp/net-errors.log";
  ::unlink(vsock.c_str());
  pid_t vmm = test::spawn_logged({test::snapvm_binary(), "run", "-k", test::guest_kernel(), "--initrd", test::guest_initrd(),
                                  "-m", "256M", "-c", "2", "--vsock", vsock, "--console", console, "--net",
                                  "tap=snapnet0,mac=02:fc:00:00:00:02", "--cmdline",
                                  std::string(arch::default_cmdline()) + kIpArg},
                                 errors);
  ASSERT_TRUE(configure_tap("snapnet0", kHostIp + "/24")) << test::read_text(errors);
  ASSERT_TRUE(wait_for_text(console, "SNAPVM-GUEST-READY", 600s)) << test::read_text(console) << test::read_text(errors);
  EXPECT_NE(test::read_text(console).find("network: eth0 10.0.2.2/255.255.255.0 via 10.0.2.1"), std::string::npos)
      << test::read_text(console);

  auto mac = test::run(vsock, {"cat", "/sys/class/net/eth0/address"});
  EXPECT_EQ(mac.out, "02:fc:00:00:00:02\n") << mac.error;
  auto ping = test::run(vsock, {"ping", "-c", "2", "-W", "5", kHostIp});
  EXPECT_EQ(ping.result.exit_code, 0) << ping.out << ping.err;
  EXPECT_EQ(NetNamespace::sh("ping -c 2 -W 5 " + kGuestIp + " > /dev/null"), 0);
  expect_http_both_ways(vsock, "boot");
  // Every received frame arrived whole: a frame spread over several
  // buffers is published at once, or the driver finds some "missing".
  auto errors_seen = test::run(vsock, {"cat", "/sys/class/net/eth0/statistics/rx_length_errors"});
  EXPECT_EQ(errors_seen.out, "0\n") << errors_seen.error;
  // Offloads were negotiated: the guest sends TCP segments larger than the
  // MTU, which the host's tap takes whole.
  auto features = test::run(vsock, {"cat", "/sys/class/net/eth0/device/features"});
  EXPECT_FALSE(features.out.empty()) << features.error;

  kill_and_wait(vmm);
  EXPECT_EQ(test::read_text(errors).find("virtio-net"), std::string::npos) << test::read_text(errors);
}

TEST(Net, TwoClonesOfOneSnapshotServeAtOnceOnTwoTapsWithTwoMacs) {
  NetNamespace base_ns;
  ASSERT_TRUE(base_ns.ok());
  const std::string vsock = "/tmp/net-base.vsock", api = "/tmp/net-base.sock", snap = "/tmp/net.snap";
  ::unlink(vsock.c_str());
  pid_t vmm = test::spawn_logged({test::snapvm_binary(), "run", "-k", test::guest_kernel(), "--initrd", test::guest_initrd(),
                                  "-m", "256M", "-c", "2", "--vsock", vsock, "--api", api, "--console",
                                  "/tmp/net-base-console.log", "--net", "tap=snapbase0", "--cmdline",
                                  std::string(arch::default_cmdline()) + kIpArg},
                                 "/tmp/net-base-errors.log");
  ASSERT_TRUE(configure_tap("snapbase0", kHostIp + "/24"));
  ASSERT_TRUE(wait_for_text("/tmp/net-base-console.log", "SNAPVM-GUEST-READY", 600s));
  // Busy on the network when the snapshot is taken: a download in flight.
  ASSERT_EQ(NetNamespace::sh("mkdir -p /tmp/hostwww && head -c 20000000 /dev/urandom > /tmp/hostwww/big && "
                             "(httpd -f -p " + kHostIp + ":8081 -h /tmp/hostwww </dev/null >/dev/null 2>&1 & "
                             "echo $! > /tmp/net-base-httpd.pid)"),
            0);
  std::this_thread::sleep_for(300ms);
  auto started = test::run(vsock, {"sh", "-c", "(wget -q -O /tmp/big http://" + kHostIp + ":8081/big </dev/null >/dev/null 2>&1 &) ; echo started"});
  EXPECT_EQ(started.out, "started\n") << started.error;
  auto taken = test::snapvm_cli("snapshot " + api + " " + snap);
  ASSERT_EQ(taken.rc, 0) << taken.out;
  kill_and_wait(vmm);
  kill_and_wait(std::atoi(test::read_text("/tmp/net-base-httpd.pid").c_str()));
  base_ns.leave();

  // Without --net a restore refuses to pick the snapshot's tap by itself.
  auto refused = test::snapvm_cli("restore " + snap + " --vsock /tmp/net-x.vsock");
  EXPECT_EQ(refused.rc, 1);
  EXPECT_NE(refused.out.find("give --net tap=NAME"), std::string::npos) << refused.out;

  // Each clone in a namespace of its own: same guest address, other tap and MAC.
  struct Clone {
    std::unique_ptr<NetNamespace> ns;
    std::string vsock;
    pid_t pid = -1;
  };
  Clone clones[2];
  for (int i = 0; i < 2; ++i) {
    Clone& c = clones[i];
    c.ns = std::make_unique<NetNamespace>();
    ASSERT_TRUE(c.ns->ok());
    c.vsock = "/tmp/net-clone" + std::to_string(i) + ".vsock";
    ::unlink(c.vsock.c_str());
    const std::string tap = "snapclone" + std::to_string(i);
    c.pid = test::spawn_logged({test::snapvm_binary(), "restore", snap, "--vsock", c.vsock, "--console",
                                "/tmp/net-clone" + std::to_string(i) + "-console.log", "--net",
                                "tap=" + tap + ",mac=02:fc:00:00:01:0" + std::to_string(i)},
                               "/tmp/net-clone" + std::to_string(i) + "-errors.log");
    const std::string errors = "/tmp/net-clone" + std::to_string(i) + "-errors.log";
    if (i == 0) {
      // The guest announces itself into a tap that is not up yet (the tap
      // answers EIO): frames dropped, nothing broken.
      for (int t = 0; t < 300 && NetNamespace::sh("ip link show " + tap + " > /dev/null 2>&1") != 0; ++t) {
        std::this_thread::sleep_for(100ms);
      }
      ASSERT_TRUE(wait_for_text(errors, "interface(s) announced", 120s)) << test::read_text(errors);
    }
    ASSERT_TRUE(configure_tap(tap, kHostIp + "/24")) << test::read_text(errors);
    EXPECT_EQ(test::read_text(errors).find("virtio-net"), std::string::npos) << test::read_text(errors);
    c.ns->leave();
  }
  for (int i = 0; i < 2; ++i) {
    Clone& c = clones[i];
    c.ns->enter();
    auto mac = test::run(c.vsock, {"cat", "/sys/class/net/eth0/address"});
    EXPECT_EQ(mac.out, "02:fc:00:00:01:0" + std::to_string(i) + "\n") << mac.error;
    // Each clone's host side learns the clone's MAC from its traffic.
    EXPECT_EQ(NetNamespace::sh("ping -c 2 -W 5 " + kGuestIp + " > /dev/null"), 0) << "clone " << i;
    c.ns->leave();
  }
  // Both serving at the same time.
  std::thread other([&] {
    clones[1].ns->enter();
    expect_http_both_ways(clones[1].vsock, "clone1");
    clones[1].ns->leave();
  });
  clones[0].ns->enter();
  expect_http_both_ways(clones[0].vsock, "clone0");
  clones[0].ns->leave();
  other.join();
  for (auto& c : clones) kill_and_wait(c.pid);
}

// Bytes the guest has received but not yet read sit in receive buffers the
// device wrote (no guest CPU touched them), so only the device's dirty
// marking puts them in a diff snapshot. Then the tap is deleted under the
// running VM: one clear line, the guest's link goes down, the VMM stays up.
TEST(Net, DiffSnapshotsCarryWhatTheDeviceWroteAndALostTapOnlyDownsTheLink) {
  auto ns = std::make_unique<NetNamespace>();
  ASSERT_TRUE(ns->ok());
  const std::string vsock = "/tmp/net-diff.vsock", api = "/tmp/net-diff.sock", errors = "/tmp/net-diff-errors.log";
  const std::string full = "/tmp/net-full.snap", diff = "/tmp/net-diff.snap";
  ::unlink(vsock.c_str());
  pid_t vmm = test::spawn_logged({test::snapvm_binary(), "run", "-k", test::guest_kernel(), "--initrd", test::guest_initrd(),
                                  "-m", "256M", "-c", "2", "--vsock", vsock, "--api", api, "--track-dirty",
                                  "--console", "/tmp/net-diff-console.log", "--net", "tap=snapdiff0", "--cmdline",
                                  std::string(arch::default_cmdline()) + kIpArg},
                                 errors);
  ASSERT_TRUE(configure_tap("snapdiff0", kHostIp + "/24"));
  ASSERT_TRUE(wait_for_text("/tmp/net-diff-console.log", "SNAPVM-GUEST-READY", 600s));
  auto taken = test::snapvm_cli("snapshot " + api + " " + full + " --resume");
  ASSERT_EQ(taken.rc, 0) << taken.out;

  // A listener that accepts and reads nothing until /tmp/go appears.
  auto listening = test::run(vsock, {"sh", "-c",
                                     "(nc -l -p 9000 -e sh -c 'while [ ! -e /tmp/go ]; do sleep 0.2; done; "
                                     "head -c 65536 > /tmp/recv' </dev/null >/dev/null 2>&1 &); echo up"});
  ASSERT_EQ(listening.out, "up\n") << listening.error;
  std::this_thread::sleep_for(500ms);
  const std::string sent = sh_out("head -c 65536 /dev/urandom > /tmp/net-sent && "
                                  "timeout 5 nc " + kGuestIp + " 9000 < /tmp/net-sent; sha256sum < /tmp/net-sent");
  auto queued = test::run(vsock, {"sh", "-c", "netstat -tn | grep ':9000 '"});
  EXPECT_NE(queued.out.find(" 65537 "), std::string::npos) << "received, unread (with the FIN): " << queued.out;
  auto taken_diff = test::snapvm_cli("snapshot " + api + " " + diff + " --diff-from " + full + " --resume");
  ASSERT_EQ(taken_diff.rc, 0) << taken_diff.out;
  EXPECT_NE(taken_diff.out.find("diff,"), std::string::npos) << taken_diff.out;

  ASSERT_EQ(NetNamespace::sh("ip link del snapdiff0"), 0);
  ASSERT_TRUE(wait_for_text(errors, "virtio-net", 30s)) << test::read_text(errors);
  EXPECT_NE(test::read_text(errors).find("the tap failed"), std::string::npos) << test::read_text(errors);
  auto carrier = test::run(vsock, {"sh", "-c",
                                   "for i in $(seq 100); do [ $(cat /sys/class/net/eth0/carrier) = 0 ] && break; "
                                   "sleep 0.1; done; cat /sys/class/net/eth0/carrier; grep virtio /proc/interrupts"});
  EXPECT_EQ(carrier.out.substr(0, 2), "0\n") << "the guest sees its link down: " << carrier.out << carrier.error
                                             << carrier.err << test::read_text(errors);
  auto alive = test::run(vsock, {"echo", "still here"});
  EXPECT_EQ(alive.out, "still here\n") << alive.error;
  kill_and_wait(vmm);
  ns.reset();

  NetNamespace clone_ns;
  ASSERT_TRUE(clone_ns.ok());
  const std::string clone_vsock = "/tmp/net-diffclone.vsock";
  ::unlink(clone_vsock.c_str());
  const std::string clone_api = "/tmp/net-diffclone.sock";
  pid_t clone = test::spawn_logged({test::snapvm_binary(), "restore", diff, "--vsock", clone_vsock, "--api", clone_api,
                                    "--net", "tap=snapdiff1", "--console", "/tmp/net-diffclone-console.log"},
                                   "/tmp/net-diffclone-errors.log");
  ASSERT_TRUE(configure_tap("snapdiff1", kHostIp + "/24")) << test::read_text("/tmp/net-diffclone-errors.log");
  auto recv = test::run(clone_vsock, {"sh", "-c",
                                      "touch /tmp/go; for i in $(seq 100); do [ $(stat -c %s /tmp/recv 2>/dev/null || "
                                      "echo 0) = 65536 ] && break; sleep 0.2; done; sha256sum < /tmp/recv"});
  if (recv.out.substr(0, 64) != sent.substr(0, 64)) {  // what the clone and its guest say of themselves
    std::this_thread::sleep_for(2s);  // a VMM on its way out has printed why
    std::cerr << "the clone's VMM is " << test::process_state(clone) << "; its console:\n"
              << test::read_text("/tmp/net-diffclone-console.log") << "\n"
              << test::snapvm_cli("info --json " + clone_api, false, 10).out;
    auto guest = test::run(clone_vsock, {"sh", "-c", "ls -l /tmp; netstat -tn; dmesg | tail -n 30"}, -1, 20s);
    std::cerr << guest.out << guest.err << guest.error << "\n";
  }
  EXPECT_EQ(recv.out.substr(0, 64), sent.substr(0, 64))
      << "the unread bytes came back with the diff: " << recv.error << recv.err
      << test::read_text("/tmp/net-diffclone-errors.log");
  kill_and_wait(clone);
  ::unlink(full.c_str());
  ::unlink(diff.c_str());
}

}  // namespace
}  // namespace snapvm
