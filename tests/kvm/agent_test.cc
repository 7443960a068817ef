// The guest agent, vsock and port forwards, against a real guest on the
// test host's KVM. One VM serves the suite; tests that restart VMs make
// their own.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <thread>

#include "agent/client.h"
#include "agent/protocol.h"
#include "background_vm.h"
#include "guest_env.h"

namespace snapvm {
namespace {

using namespace std::chrono_literals;
using test::BackgroundVm;
using test::Output;
using test::run;

// The guest's `seq 1 n` output, computed here.
std::string seq(int n) {
  std::string s;
  for (int i = 1; i <= n; ++i) s += std::to_string(i) + "\n";
  return s;
}

// A pipe whose read end streams `data` (written by a thread).
struct Feeder {
  explicit Feeder(std::string data) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) std::abort();
    read_fd = p[0];
    writer = std::thread([fd = p[1], d = std::move(data)] {
      size_t done = 0;
      while (done < d.size()) {
        ssize_t n = ::write(fd, d.data() + done, d.size() - done);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      ::close(fd);
    });
  }
  ~Feeder() {
    writer.join();
    ::close(read_fd);
  }
  int read_fd;
  std::thread writer;
};

// A blocking Unix listener at `path`, where the VMM delivers the guest's
// connections to a host port (Firecracker's <uds>_<port>); -1 on error.
int listen_blocking(const std::string& path, int backlog) {
  ::unlink(path.c_str());
  int l = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  if (l < 0 || ::bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(l, backlog) != 0) {
    if (l >= 0) ::close(l);
    return -1;
  }
  return l;
}

class Agent : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    vm_ = new BackgroundVm(kVsock, {}, {{0, 1024, 0, 0, 0, "127.0.0.1"}});
    ready_ = vm_->error().empty() && vm_->wait_ready();
  }
  static void TearDownTestSuite() {
    delete vm_;
    vm_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(vm_->error().empty()) << vm_->error();
    ASSERT_TRUE(ready_) << "guest not ready; console:\n" << vm_->console();
  }
  static constexpr const char* kVsock = "/tmp/agent-test.vsock";
  static BackgroundVm* vm_;
  static bool ready_;
};
BackgroundVm* Agent::vm_ = nullptr;
bool Agent::ready_ = false;

TEST_F(Agent, ExecUname) {
  auto o = run(kVsock, {"uname", "-a"});
  ASSERT_TRUE(o.error.empty()) << o.error;
  EXPECT_EQ(o.result.exit_code, 0);
  EXPECT_NE(o.out.find("Linux"), std::string::npos) << o.out;
#if defined(__aarch64__)
  EXPECT_NE(o.out.find("aarch64"), std::string::npos) << o.out;
#else
  EXPECT_NE(o.out.find("x86_64"), std::string::npos) << o.out;
#endif
}

TEST_F(Agent, SixteenMegabytesOfStdoutArriveByteExact) {
  // Random bytes, so any lost, repeated or reordered chunk changes the
  // digest; made and hashed in the guest (a 16 MiB `seq` took 40 s of the
  // emulated host's time to print).
  auto made = run(kVsock, {"sh", "-c", "head -c 16777216 /dev/urandom > /tmp/big && md5sum < /tmp/big"});
  ASSERT_EQ(made.result.exit_code, 0) << made.error << made.err;
  auto start = std::chrono::steady_clock::now();
  auto o = run(kVsock, {"cat", "/tmp/big"});
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  run(kVsock, {"rm", "/tmp/big"});
  ASSERT_TRUE(o.error.empty()) << o.error;
  EXPECT_EQ(o.result.exit_code, 0);
  ASSERT_EQ(o.out.size(), 16u << 20);
  const std::string copy = "/tmp/agent-big.out";
  {
    std::ofstream(copy, std::ios::binary) << o.out;
  }
  FILE* p = ::popen(("md5sum < " + copy).c_str(), "r");
  ASSERT_NE(p, nullptr);
  char digest[128] = {};
  size_t n = std::fread(digest, 1, sizeof digest - 1, p);
  ::pclose(p);
  ::unlink(copy.c_str());
  EXPECT_EQ(std::string(digest, n), made.out) << "stdout differs from the guest's file";
  std::printf("FIGURE exec_stdout_bytes=%zu seconds=%.2f\n", o.out.size(), secs);
}

TEST_F(Agent, StdoutAndStderrStaySeparate) {
  auto o = run(kVsock, {"sh", "-c", "echo out; echo err >&2; echo out2"});
  EXPECT_EQ(o.out, "out\nout2\n");
  EXPECT_EQ(o.err, "err\n");
}

TEST_F(Agent, StdinStreamsToTheCommand) {
  std::string data = seq(400'000);  // 2.7 MB
  Feeder feed(data);
  auto streamed = run(kVsock, {"sha256sum"}, feed.read_fd);
  auto local = run(kVsock, {"sh", "-c", "seq 1 400000 | sha256sum"});
  ASSERT_TRUE(streamed.error.empty()) << streamed.error;
  EXPECT_EQ(streamed.result.exit_code, 0);
  EXPECT_EQ(streamed.out.substr(0, 64), local.out.substr(0, 64));
  EXPECT_EQ(streamed.out.size(), 64u + 4u);  // hash, two spaces, "-", newline
}

TEST_F(Agent, ExitCodesAndSignalsAreReported) {
  EXPECT_EQ(run(kVsock, {"sh", "-c", "exit 42"}).result.exit_code, 42);
  auto sig = run(kVsock, {"sh", "-c", "kill -TERM $$"});
  EXPECT_EQ(sig.result.signal, 15);
  EXPECT_EQ(sig.result.shell_status(), 143);
  // Found through the request's PATH, which includes /sbin.
  EXPECT_EQ(run(kVsock, {"ifconfig", "lo"}).result.exit_code, 0);
  auto missing = run(kVsock, {"no-such-command"});
  EXPECT_NE(missing.error.find("command not found"), std::string::npos) << missing.error;
}

TEST_F(Agent, TimeoutKillsTheCommand) {
  auto start = std::chrono::steady_clock::now();
  auto o = run(kVsock, {"sh", "-c", "sleep 60; echo never"}, -1, 1000ms);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(o.error.empty()) << o.error;
  EXPECT_TRUE(o.result.timed_out);
  EXPECT_EQ(o.result.signal, 9);
  EXPECT_EQ(o.out, "");
  EXPECT_LT(secs, 30);
}

TEST_F(Agent, EightMegabyteFileCopiesInAndOutIdentically) {
  std::string in = "/tmp/agent-in.bin", out = "/tmp/agent-out.bin";
  std::vector<uint8_t> data(8 << 20);
  uint64_t x = 88172645463325252ull;
  for (auto& b : data) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<uint8_t>(x);
  }
  { std::ofstream(in, std::ios::binary).write(reinterpret_cast<char*>(data.data()), static_cast<long>(data.size())); }
  auto put = agent::put_file(kVsock, in, "/tmp/copied.bin");
  ASSERT_TRUE(put) << put.error().describe();
  EXPECT_EQ(*put, data.size());
  EXPECT_EQ(run(kVsock, {"sh", "-c", "wc -c < /tmp/copied.bin"}).out, std::to_string(data.size()) + "\n");
  auto get = agent::get_file(kVsock, "/tmp/copied.bin", out);
  ASSERT_TRUE(get) << get.error().describe();
  std::ifstream f(out, std::ios::binary);
  std::vector<uint8_t> back((std::istreambuf_iterator<char>(f)), {});
  EXPECT_TRUE(back == data) << "the file changed on its way through the guest";
  auto missing = agent::get_file(kVsock, "/no/such/file", out + ".x");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().describe().find("No such file"), std::string::npos) << missing.error().describe();
  EXPECT_NE(::access((out + ".x").c_str(), F_OK), 0) << "a failed copy left a file behind";
}

TEST_F(Agent, HundredConcurrentConnectionsEcho) {
  std::vector<std::future<Output>> futures;
  for (int i = 0; i < 100; ++i) {
    futures.push_back(std::async(std::launch::async, [i] {
      Feeder feed("message " + std::to_string(i) + "\n");
      return run(kVsock, {"cat"}, feed.read_fd);
    }));
  }
  for (int i = 0; i < 100; ++i) {
    auto o = futures[i].get();
    EXPECT_TRUE(o.error.empty()) << i << ": " << o.error;
    EXPECT_EQ(o.out, "message " + std::to_string(i) + "\n") << i;
  }
}

// The agent runs commands as root: a process inside the guest that reaches
// port 1024 over vsock loopback (CID 1) must be refused, or any guest user
// could become root through it.
TEST_F(Agent, RefusesRequestsFromInsideTheGuest) {
  auto o = run(kVsock, {"sh", "-c",
                        "rm -f /tmp/pwned; "
                        "printf '\\040\\000\\000\\000\\001{\"argv\":[\"touch\",\"/tmp/pwned\"]}\\001\\000\\000\\000\\003' "
                        "| vsock-connect 1024 1 >/dev/null 2>&1; sleep 1; "
                        "if test -e /tmp/pwned; then echo ran; else echo refused; fi; grep -c '^vsock_loopback ' /proc/modules"});
  ASSERT_TRUE(o.error.empty()) << o.error;
  EXPECT_EQ(o.out, "refused\n1\n") << "stderr: " << o.err;
}

// At most 128 requests run at once; one more is told the agent is busy.
// Each request holds a connection to a host listener until the test lets
// go, so the 128 are provably running together however slow the machine
// (a fixed sleep let early requests finish before the last ones arrived on
// a slow CI host, and nothing was refused).
TEST_F(Agent, CapsConcurrentRequests) {
  constexpr int kRequests = 132, kCap = 128;
  std::string path = std::string(kVsock) + "_5002";
  int l = listen_blocking(path, 256);
  ASSERT_GE(l, 0) << std::strerror(errno);
  std::atomic<int> held{0};
  std::atomic<bool> stop{false};
  std::vector<int> held_fds;  // the gate thread's until it is joined
  std::thread gate([&] {
    while (!stop && held < kRequests) {
      pollfd p{l, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      int c = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      held_fds.push_back(c);
      ++held;
    }
  });
  std::vector<std::future<Output>> futures;
  for (int i = 0; i < kRequests; ++i) {
    futures.push_back(std::async(std::launch::async, [] { return run(kVsock, {"sh", "-c", "vsock-connect 5002 </dev/null"}); }));
  }
  // The refused requests come back at once; the others hold the gate.
  auto refused_so_far = [&] {
    int done = 0;
    for (auto& f : futures) done += f.wait_for(0s) == std::future_status::ready;
    return done;
  };
  auto deadline = std::chrono::steady_clock::now() + 300s;
  while (held + refused_so_far() < kRequests && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  std::this_thread::sleep_for(1s);  // a request beyond the cap would reach the gate now
  int running_together = held.load();
  stop = true;
  gate.join();
  for (int fd : held_fds) ::close(fd);
  ::close(l);
  ::unlink(path.c_str());
  int busy = 0, ok = 0;
  for (auto& f : futures) {
    auto o = f.get();
    if (o.error.find("the agent is busy") != std::string::npos) ++busy;
    if (o.error.empty() && o.result.exit_code == 0) ++ok;
  }
  EXPECT_EQ(running_together, kCap);
  EXPECT_EQ(busy, kRequests - kCap);
  EXPECT_EQ(ok + busy, kRequests) << "every request either ran or was told the agent is busy";
  EXPECT_EQ(run(kVsock, {"echo", "free again"}).out, "free again\n");
}

TEST_F(Agent, HostTcpClientReachesGuestServiceThroughPortForward) {
  auto fwds = vm_->machine().port_forwards();
  ASSERT_EQ(fwds.size(), 1u);
  ASSERT_NE(fwds[0].host_port, 0u);
  // Speak the agent protocol over TCP: the forward is a plain byte stream.
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(fwds[0].host_port));
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  ASSERT_EQ(0, ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a)) << std::strerror(errno);
  std::vector<uint8_t> req;
  agent::append_frame(req, agent::Frame::kExec, std::string(R"({"argv":["cat"]})"));
  agent::append_frame(req, agent::Frame::kStdin, std::string("through the forward\n"));
  agent::append_frame(req, agent::Frame::kStdinEof, std::string());
  ASSERT_EQ(::send(s, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  agent::FrameReader reader;
  std::string out;
  bool exited = false;
  while (!exited) {
    uint8_t buf[4096];
    ssize_t n = ::recv(s, buf, sizeof buf, 0);
    ASSERT_GT(n, 0) << "connection ended early";
    reader.feed({buf, static_cast<size_t>(n)});
    while (auto m = reader.next()) {
      if (m->type == agent::Frame::kStdout) out += m->text();
      if (m->type == agent::Frame::kExit) exited = true;
    }
  }
  ::close(s);
  EXPECT_EQ(out, "through the forward\n");
}

TEST_F(Agent, GuestConnectionsReachHostListeners) {
  // A guest-initiated connection to host port 5000 arrives at <vsock>_5000.
  std::string path = std::string(kVsock) + "_5000";
  int l = listen_blocking(path, 4);
  ASSERT_GE(l, 0) << std::strerror(errno);
  std::thread server([l] {
    int c = ::accept(l, nullptr, nullptr);
    if (c < 0) return;
    char buf[64];
    ssize_t n = ::recv(c, buf, sizeof buf, 0);
    if (n > 0) ::send(c, buf, static_cast<size_t>(n), 0);
    ::close(c);
  });
  auto o = run(kVsock, {"sh", "-c", "echo hello from the guest | vsock-connect 5000"});
  server.join();
  ::close(l);
  ::unlink(path.c_str());
  ASSERT_TRUE(o.error.empty()) << o.error;
  EXPECT_EQ(o.out, "hello from the guest\n") << o.err;
  EXPECT_EQ(o.result.exit_code, 0) << o.err;
  // Nobody listens on port 5001: the guest's connect is refused.
  auto refused = run(kVsock, {"sh", "-c", "vsock-connect 5001 </dev/null"});
  EXPECT_NE(refused.result.exit_code, 0);
  EXPECT_NE(refused.err.find("vsock-connect:"), std::string::npos) << refused.err;
}

TEST_F(Agent, KillingTheAgentLeavesTheVmmRunningWithAClearError) {
  auto kill = run(kVsock, {"sh", "-c", "kill -9 $(cat /run/snapvm-agent.pid) && echo killed"});
  EXPECT_EQ(kill.out, "killed\n");
  std::this_thread::sleep_for(500ms);
  auto after = run(kVsock, {"uname"});
  EXPECT_NE(after.error.find("refused"), std::string::npos) << after.error;
  EXPECT_FALSE(vm_->exited()) << "the VMM went down with the guest agent";
}

}  // namespace
}  // namespace snapvm

namespace snapvm {
namespace {

using test::BackgroundVm;
using test::run;

TEST(AgentDisk, BlockDataWrittenByTheGuestSurvivesARestart) {
  std::string image = "/tmp/persist.img";
  {
    int fd = ::open(image.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(0, ::ftruncate(fd, 8 << 20));
    ::close(fd);
  }
  const std::string vsock = "/tmp/persist.vsock";
  const std::string message = "written by the first VM";
  // Booted, both times: the test is that a fresh boot reads what the first
  // VM wrote, and a warm restore needs a disk of zeros (warm_snapshot.h).
  test::VmOptions boot;
  boot.disks = {{image, false}};
  boot.start = test::VmOptions::Start::kBoot;
  {
    BackgroundVm vm(vsock, boot);
    ASSERT_TRUE(vm.error().empty()) << vm.error();
    ASSERT_TRUE(vm.wait_ready()) << vm.console();
    auto w = run(vsock, {"sh", "-c", "printf '" + message + "' | dd of=/dev/vda seek=1 bs=4096 conv=fsync 2>/dev/null"});
    ASSERT_TRUE(w.error.empty()) << w.error;
    ASSERT_EQ(w.result.exit_code, 0) << w.err;
  }  // the VM is stopped here
  {
    std::ifstream f(image, std::ios::binary);
    f.seekg(4096);
    std::string on_disk(message.size(), '\0');
    f.read(on_disk.data(), static_cast<long>(on_disk.size()));
    EXPECT_EQ(on_disk, message) << "the write did not reach the image file";
  }
  BackgroundVm vm(vsock, boot);
  ASSERT_TRUE(vm.wait_ready()) << vm.error() << vm.console();
  auto r = run(vsock, {"sh", "-c", "dd if=/dev/vda skip=1 bs=4096 count=1 2>/dev/null | head -c " +
                                       std::to_string(message.size())});
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(r.out, message);
}

}  // namespace
}  // namespace snapvm
