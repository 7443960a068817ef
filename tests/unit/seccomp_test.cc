// Per-thread seccomp filters: a forbidden call from a filtered thread ends
// the process with one line naming the thread kind and the call; allowed
// calls and other threads are unaffected.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <net/if.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "sandbox/seccomp.h"
#include "test_util.h"

namespace snapvm {
namespace {

struct ChildResult {
  int status = 0;
  std::string err;
};

// Runs `child` in a forked process whose stderr is captured; `child` never
// returns (it exits or execs).
ChildResult forked(const std::function<void()>& child) {
  test::TempDir dir;
  std::string log = dir.file("err");
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(fd, 2);
    child();
    ::_exit(127);
  }
  ChildResult r;
  ::waitpid(pid, &r.status, 0);
  auto bytes = test::read_file(log);
  r.err.assign(bytes.begin(), bytes.end());
  return r;
}

// Runs `body` in a forked child with the sandbox enabled; stderr captured.
ChildResult in_child(const std::function<int()>& body) {
  return forked([&] {
    if (!sandbox::enable(sandbox::Mode::kEnforce)) ::_exit(3);
    ::_exit(body());
  });
}

TEST(Seccomp, AForbiddenCallEndsTheVmmWithOneLine) {
  auto r = in_child([] {
    std::thread vcpu([] {
      if (!sandbox::enter(sandbox::ThreadKind::kVcpu)) ::_exit(4);
      (void)::socket(AF_INET, SOCK_STREAM, 0);  // a vCPU thread has no business opening sockets
      ::_exit(0);
    });
    vcpu.join();
    return 0;
  });
  ASSERT_TRUE(WIFEXITED(r.status)) << r.err;
  EXPECT_EQ(WEXITSTATUS(r.status), sandbox::kExitForbiddenSyscall) << r.err;
  EXPECT_NE(r.err.find("snapvm: seccomp: the vCPU thread made a forbidden system call socket ("), std::string::npos)
      << r.err;
}

// An open that a filter refuses names its path and where it was called
// from: the one such refusal seen in a test host came from a path through
// the code that nothing else revealed.
TEST(Seccomp, ARefusedOpenNamesItsPathAndTheCallStack) {
  auto r = in_child([] {
    std::thread device([] {
      if (!sandbox::enter(sandbox::ThreadKind::kDevice)) ::_exit(4);
      (void)::open("/etc/hostname", O_RDONLY);
      ::_exit(0);
    });
    device.join();
    return 0;
  });
  ASSERT_TRUE(WIFEXITED(r.status)) << r.err;
  EXPECT_EQ(WEXITSTATUS(r.status), sandbox::kExitForbiddenSyscall) << r.err;
  EXPECT_NE(r.err.find("the device thread made a forbidden system call openat ("), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(", path /etc/hostname); the VMM stops\nsnapvm: seccomp: call stack:\n"), std::string::npos)
      << r.err;
  // At least the libc wrapper, the thread's function and the thread start.
  auto stack = r.err.substr(r.err.find("call stack:\n") + 12);
  EXPECT_GE(std::count(stack.begin(), stack.end(), '\n'), 3) << r.err;
}

// Runs tests/unit/seccomp_child.cc in a process of its own: glibc keeps
// per-process state (its answer about overcommit, the unwinder once loaded)
// that a child forked from this binary would inherit.
ChildResult fresh_process(const std::string& scenario) {
  return forked([&] {
    std::string program = std::string(SNAPVM_BIN_DIR) + "/snapvm-test-seccomp-child";
    ::execl(program.c_str(), program.c_str(), scenario.c_str(), static_cast<char*>(nullptr));
  });
}

// glibc gives threads their own malloc arenas, and the first time one of
// them shrinks it opens /proc/sys/vm/overcommit_memory: from a device
// thread under its filter that open ended restored VMs with status 159
// when their guest powered off (the device threads freed their buffers and
// exited). Filtered threads allocating and freeing as devices do must run
// on.
TEST(Seccomp, FilteredThreadsChurningAllocationsAreNeverStopped) {
  auto r = fresh_process("churn");
  ASSERT_TRUE(WIFEXITED(r.status)) << "ended by signal " << WTERMSIG(r.status) << ": " << r.err;
  EXPECT_EQ(WEXITSTATUS(r.status), 0) << r.err;
  EXPECT_EQ(r.err, "");
}

// The reporter itself runs in the filtered thread that made the call: its
// call stack (backtrace loads the unwinder on first use) must not make a
// second forbidden call, which would end the process with a bare SIGSYS.
TEST(Seccomp, TheReportersCallStackWorksUnderTheFilterInAFreshProcess) {
  auto r = fresh_process("report");
  ASSERT_TRUE(WIFEXITED(r.status)) << "ended by signal " << WTERMSIG(r.status) << ": " << r.err;
  EXPECT_EQ(WEXITSTATUS(r.status), sandbox::kExitForbiddenSyscall) << r.err;
  EXPECT_NE(r.err.find("the device thread made a forbidden system call socketpair ("), std::string::npos) << r.err;
  auto at = r.err.find("call stack:\n");
  ASSERT_NE(at, std::string::npos) << r.err;
  auto stack = r.err.substr(at + 12);
  EXPECT_GE(std::count(stack.begin(), stack.end(), '\n'), 3) << r.err;
}

TEST(Seccomp, AllowedCallsAndOtherThreadsCarryOn) {
  auto r = in_child([] {
    int rc = 1;
    std::thread vcpu([&] {
      if (!sandbox::enter(sandbox::ThreadKind::kVcpu)) return;
      // KVM_RUN is allowed (here on a bad fd), as are reads and writes.
      if (::ioctl(-1, KVM_RUN, 0) != -1 || errno != EBADF) return;
      if (::write(2, "", 0) != 0) return;
      rc = 0;
    });
    vcpu.join();
    if (rc != 0) return 5;
    // The main thread has no filter: sockets still work here.
    int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    return s >= 0 ? 0 : 6;
  });
  ASSERT_TRUE(WIFEXITED(r.status)) << r.err;
  EXPECT_EQ(WEXITSTATUS(r.status), 0) << r.err;
}

TEST(Seccomp, IoctlsAreFilteredByRequest) {
  auto r = in_child([] {
    std::thread device([] {
      if (!sandbox::enter(sandbox::ThreadKind::kDevice)) ::_exit(4);
      winsize w{};
      (void)::ioctl(0, TIOCGWINSZ, &w);  // not KVM_IRQ_LINE
      ::_exit(0);
    });
    device.join();
    return 0;
  });
  ASSERT_TRUE(WIFEXITED(r.status)) << r.err;
  EXPECT_EQ(WEXITSTATUS(r.status), sandbox::kExitForbiddenSyscall);
  EXPECT_NE(r.err.find("the device thread made a forbidden system call ioctl"), std::string::npos) << r.err;
  // The refused request is named: without it a refused KVM ioctl is a guess.
  EXPECT_NE(r.err.find(fmt::format(", request {:#x}); the VMM stops", static_cast<unsigned long>(TIOCGWINSZ))),
            std::string::npos)
      << r.err;
}

#if defined(__x86_64__)
// A vCPU that triple-faults is described from its own thread (registers,
// special registers, pending events) before the VMM reports the reset.
TEST(Seccomp, AVcpuThreadMayReadItsRegistersForTheTripleFaultReport) {
  auto r = in_child([] {
    int rc = 1;
    std::thread vcpu([&] {
      if (!sandbox::enter(sandbox::ThreadKind::kVcpu)) return;
      kvm_regs regs{};
      kvm_sregs sregs{};
      kvm_vcpu_events events{};
      if (::ioctl(-1, KVM_GET_REGS, &regs) != -1 || errno != EBADF) return;
      if (::ioctl(-1, KVM_GET_SREGS, &sregs) != -1 || errno != EBADF) return;
      if (::ioctl(-1, KVM_GET_VCPU_EVENTS, &events) != -1 || errno != EBADF) return;
      rc = 0;
    });
    vcpu.join();
    return rc == 0 ? 0 : 5;
  });
  ASSERT_TRUE(WIFEXITED(r.status)) << r.err;
  EXPECT_EQ(WEXITSTATUS(r.status), 0) << r.err;
}
#endif

// One call, made on a thread under `kind`'s filter, as a probe of what the
// filter allows: exit 0 when the call returned (whatever it answered), the
// reporter's status and line when the filter refused it.
struct Probe {
  const char* syscall;  // as the reporter names it
  std::function<void()> call;
};

ChildResult call_under(sandbox::ThreadKind kind, const std::function<void()>& call) {
  return in_child([&] {
    std::thread t([&] {
      if (!sandbox::enter(kind)) ::_exit(4);
      call();
    });
    t.join();
    return 0;
  });
}

void expect_allowed(sandbox::ThreadKind kind, const std::vector<Probe>& probes) {
  for (const auto& p : probes) {
    auto r = call_under(kind, p.call);
    EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
        << "the " << sandbox::name(kind) << " filter refused " << p.syscall << ": " << r.err;
  }
}

void expect_refused(sandbox::ThreadKind kind, const std::vector<Probe>& probes) {
  for (const auto& p : probes) {
    auto r = call_under(kind, p.call);
    EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == sandbox::kExitForbiddenSyscall)
        << "the " << sandbox::name(kind) << " filter let " << p.syscall << " through: " << r.err;
    EXPECT_NE(r.err.find(fmt::format("the {} thread made a forbidden system call {} (", sandbox::name(kind),
                                     p.syscall)),
              std::string::npos)
        << r.err;
  }
}

// Harmless forms of each call: bad descriptors, missing paths.
const Probe kOpen{"openat", [] { ::close(::open("/dev/null", O_RDONLY)); }};
const Probe kSocket{"socket", [] { ::close(::socket(AF_UNIX, SOCK_STREAM, 0)); }};
const Probe kConnect{"connect", [] { (void)::connect(-1, nullptr, 0); }};
const Probe kAccept{"accept4", [] { (void)::accept4(-1, nullptr, nullptr, 0); }};
const Probe kBind{"bind", [] { (void)::bind(-1, nullptr, 0); }};
const Probe kKill{"kill", [] { (void)::kill(::getpid(), 0); }};
const Probe kUnlink{"unlink", [] { (void)::unlink("/nonexistent/snapvm-probe"); }};
const Probe kThread{"clone", [] { std::thread([] {}).join(); }};
const Probe kFork{"clone", [] {
                    if (::fork() == 0) ::_exit(0);  // only if the filter let it through
                  }};
// Under ThreadSanitizer the refused fork traps inside TSan's fork
// interceptor, which holds TSan's own locks, and the reporter's handler
// then waits on them for good (each such test hit ctest's 300 s limit):
// the fork probe runs in the plain and ASan builds only.
#if defined(__SANITIZE_THREAD__)
constexpr bool kCanProbeFork = false;
#else
constexpr bool kCanProbeFork = true;
#endif
std::vector<Probe> and_fork(std::vector<Probe> probes) {
  if (kCanProbeFork) probes.push_back(kFork);
  return probes;
}
const Probe kExec{"execve", [] {
                    char* argv[] = {nullptr};
                    (void)::execve("/nonexistent/snapvm-probe", argv, argv);
                  }};
const Probe kMount{"mount", [] { (void)::syscall(SYS_mount, "none", "/nonexistent", "tmpfs", 0, nullptr); }};
const Probe kKvmIoctl{"ioctl", [] { (void)::ioctl(-1, KVM_CHECK_EXTENSION, 0); }};
const Probe kReflink{"ioctl", [] { (void)::ioctl(-1, FICLONE, 0); }};
const Probe kNonBlocking{"ioctl", [] {
                           int on = 1;
                           (void)::ioctl(-1, FIONBIO, &on);
                         }};
const Probe kTapIoctl{"ioctl", [] {
                        ifreq ifr{};
                        (void)::ioctl(-1, TUNSETIFF, &ifr);
                      }};
// Pushes a byte into a terminal's input, as if typed: a classic way out of
// a sandbox that allows every ioctl.
const Probe kTerminalInput{"ioctl", [] {
                             char c = 'x';
                             (void)::ioctl(-1, TIOCSTI, &c);
                           }};

// The control thread (snapshots on the control socket) capture-reads KVM
// and writes files with writer threads; it was allowed every ioctl and
// fork: now KVM's requests, threads only.
TEST(Seccomp, TheControlFilterAllowsCaptureAndWritersButNoOtherIoctlOrProcess) {
  expect_allowed(sandbox::ThreadKind::kControl, {kOpen, kSocket, kThread, kKvmIoctl, kReflink});
  expect_refused(sandbox::ThreadKind::kControl, and_fork({kTerminalInput, kTapIoctl, kExec, kMount}));
}

// The Firecracker API's HTTP thread had the control filter: it serves its
// own socket and never needs a new one.
TEST(Seccomp, TheApiFilterServesItsSocketAndSnapshotsButOpensNoSocket) {
  expect_allowed(sandbox::ThreadKind::kApi, {kOpen, kAccept, kNonBlocking, kThread, kKvmIoctl, kReflink});
  expect_refused(sandbox::ThreadKind::kApi, and_fork({kSocket, kConnect, kTerminalInput, kExec, kMount}));
}

// The thread that builds or restores the machine was unfiltered. Every
// thread it starts inherits its filter beneath their own.
TEST(Seccomp, TheBuildFilterBuildsAMachineButStartsNoProgram) {
  expect_allowed(sandbox::ThreadKind::kBuild, {kOpen, kSocket, kBind, kKvmIoctl, kTapIoctl, kThread});
  expect_refused(sandbox::ThreadKind::kBuild, and_fork({kExec, kMount, kTerminalInput}));
}

TEST(Seccomp, ThreadsStartedUnderTheBuildFilterInstallTheirOwn) {
  auto r = call_under(sandbox::ThreadKind::kBuild, [] {
    std::thread device([] {
      if (!sandbox::enter(sandbox::ThreadKind::kDevice)) ::_exit(4);
      (void)::open("/dev/null", O_RDONLY);  // the build filter allows it; the device filter does not
    });
    device.join();
  });
  ASSERT_TRUE(WIFEXITED(r.status)) << r.err;
  EXPECT_EQ(WEXITSTATUS(r.status), sandbox::kExitForbiddenSyscall) << r.err;
  EXPECT_NE(r.err.find("the device thread made a forbidden system call openat ("), std::string::npos) << r.err;
}

// `pool serve` had no filter: its request threads talk to clones' control
// sockets and stop clones, and open nothing.
TEST(Seccomp, ThePoolFilterTalksToClonesAndStopsThemButOpensNothing) {
  expect_allowed(sandbox::ThreadKind::kPool, {kSocket, kConnect, kKill, kUnlink, kThread});
  expect_refused(sandbox::ThreadKind::kPool, and_fork({kOpen, kExec, kKvmIoctl, kMount}));
}

// `image import` had no filter: it reads archives and writes files, and
// reaches no socket.
TEST(Seccomp, TheImportFilterWritesFilesButReachesNoSocket) {
  expect_allowed(sandbox::ThreadKind::kImport, {kOpen, kUnlink, kThread});
  expect_refused(sandbox::ThreadKind::kImport, {kSocket, kConnect, kKvmIoctl, kMount});
}

}  // namespace
}  // namespace snapvm
