#include "sandbox/seccomp.h"

#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <execinfo.h>
#include <malloc.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>

namespace snapvm::sandbox {
namespace {

std::atomic<bool> g_enabled{false};
Mode g_mode = Mode::kEnforce;
thread_local const char* t_kind = "unfiltered";

// Syscall names by number, resolved once at enable(): the SIGSYS handler
// may not allocate.
constexpr int kNames = 512;
char g_names[kNames][24];

void put(const char* s) { (void)!::write(2, s, std::strlen(s)); }

void put_number(long v) {
  char buf[24];
  int i = sizeof buf;
  buf[--i] = '\0';
  bool negative = v < 0;
  unsigned long u = negative ? static_cast<unsigned long>(-v) : static_cast<unsigned long>(v);
  do {
    buf[--i] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (negative) buf[--i] = '-';
  put(buf + i);
}

void put_hex(unsigned long v) {
  char buf[24];
  int i = sizeof buf;
  buf[--i] = '\0';
  do {
    buf[--i] = "0123456789abcdef"[v % 16];
    v /= 16;
  } while (v != 0);
  buf[--i] = 'x';
  buf[--i] = '0';
  put(buf + i);
}

// The second argument of the trapped call, from the registers the kernel
// saved: for ioctl, the request, which names what was refused; for openat,
// the path.
unsigned long argument(const void* context, int index) {
  const auto* uc = static_cast<const ucontext_t*>(context);
#if defined(__x86_64__)
  static constexpr int kRegs[] = {REG_RDI, REG_RSI, REG_RDX};
  return static_cast<unsigned long>(uc->uc_mcontext.gregs[kRegs[index]]);
#elif defined(__aarch64__)
  return uc->uc_mcontext.regs[index];
#else
  (void)uc;
  (void)index;
  return 0;
#endif
}

// The path an open asked for, as far as it is printable (the pointer is the
// refused call's own argument).
void put_path(unsigned long address) {
  const char* path = reinterpret_cast<const char*>(address);
  if (path == nullptr) return;
  char buf[128];
  size_t n = 0;
  while (n < sizeof buf - 1 && path[n] >= ' ' && path[n] < 127) {
    buf[n] = path[n];
    ++n;
  }
  buf[n] = '\0';
  put(", path ");
  put(buf);
}

void on_sigsys(int, siginfo_t* info, void* context) {
  int nr = info->si_syscall;
  put("snapvm: seccomp: the ");
  put(t_kind);
  put(" thread made a forbidden system call ");
  put(nr >= 0 && nr < kNames && g_names[nr][0] != '\0' ? g_names[nr] : "?");
  put(" (");
  put_number(nr);
  if (nr == SCMP_SYS(ioctl)) {
    put(", request ");
    put_hex(argument(context, 1));
  }
  if (nr == SCMP_SYS(openat)) put_path(argument(context, 1));
  if (nr == SCMP_SYS(open)) put_path(argument(context, 0));
  put("); the VMM stops\n");
  // Where the call came from: a refused call is a path through code that
  // the filters did not foresee, rare enough that the report must name it
  // the first time (addresses resolve with addr2line on the binary).
  void* frames[24];
  int depth = ::backtrace(frames, 24);
  put("snapvm: seccomp: call stack:\n");
  ::backtrace_symbols_fd(frames, depth, 2);
  ::_exit(kExitForbiddenSyscall);
}

const std::initializer_list<const char*> kCommon = {
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "close", "futex",
    "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "sigaltstack", "exit", "exit_group", "madvise", "mincore", "mmap",
    "munmap", "mprotect", "mremap", "brk", "clock_gettime", "clock_nanosleep", "nanosleep", "gettimeofday",
    "gettid", "getpid", "tgkill", "tkill", "sched_yield", "getrandom", "restart_syscall", "fstat", "newfstatat",
    "statx", "lseek", "ppoll", "poll", "fcntl", "set_robust_list", "rseq", "sched_getaffinity", "prlimit64",
    "getuid", "geteuid", "getgid", "getegid"};

// Socket and polling calls of device workers and agent clients.
const std::initializer_list<const char*> kSockets = {
    "epoll_pwait", "epoll_wait", "epoll_ctl", "accept4", "accept", "socket", "connect", "recvfrom", "sendto",
    "recvmsg", "sendmsg", "shutdown", "setsockopt", "getsockopt", "getsockname", "getpeername", "eventfd2"};

// What writing and checking snapshots needs beyond the common calls.
const std::initializer_list<const char*> kFiles = {
    "openat", "open", "unlinkat", "unlink", "renameat", "renameat2", "rename", "fsync", "fdatasync", "ftruncate",
    "fallocate", "copy_file_range", "fstatfs", "statfs", "uname", "getdents64", "mkdirat", "fchmod", "fchmodat",
    "dup", "dup3", "readlinkat", "sync_file_range"};

// The server side of the Firecracker API's socket (Boost.Asio): it accepts
// on a socket made before its filter and never makes one or connects.
const std::initializer_list<const char*> kServedSockets = {
    "epoll_pwait", "epoll_wait", "epoll_ctl", "accept4", "accept", "recvfrom", "sendto", "recvmsg", "sendmsg",
    "shutdown", "setsockopt", "getsockopt", "getsockname", "getpeername", "timerfd_settime", "timerfd_gettime"};

// Building or restoring a machine beyond files and sockets: its listening
// sockets, event fds and a userfaultfd, the filters its threads install on
// themselves (prctl names them, seccomp loads), and the names glibc's
// path calls use on x86_64 (mkdir, chmod, readlink, access).
const std::initializer_list<const char*> kBuild = {
    "bind", "listen", "eventfd2", "epoll_create1", "userfaultfd", "umask", "mkdir", "chmod", "readlink", "access",
    "faccessat", "faccessat2", "getcwd", "prctl", "seccomp", "timerfd_create", "timerfd_settime", "timerfd_gettime"};

// Unpacking an image's layers into a scratch tree and making its ext4 file:
// libarchive reads archives (no decompressor programs: their filters are
// built in), the tree is written below the store through openat2, and
// mkfs.ext4 is spawned (it inherits this filter).
const std::initializer_list<const char*> kImportFiles = {
    "openat2", "mkdir", "mkdirat", "symlink", "symlinkat", "link", "linkat", "unlink", "unlinkat", "rmdir",
    "rename", "renameat", "renameat2", "chmod", "fchmod", "fchmodat", "chown", "fchown", "fchownat", "lchown",
    "utimensat", "futimesat", "readlink", "readlinkat", "getdents64", "ftruncate", "fallocate", "fsync",
    "fdatasync", "fstatfs", "statfs", "umask", "dup", "dup2", "dup3", "pipe2", "access", "faccessat", "faccessat2",
    "uname", "sysinfo", "getcwd", "chdir", "fchdir", "getppid", "getpgrp", "setpgid", "getrusage", "wait4",
    "execve", "vfork", "fsetxattr", "lsetxattr", "fgetxattr", "lgetxattr", "flistxattr", "llistxattr",
    "fadvise64", "sync_file_range", "copy_file_range", "sendfile", "mknodat", "statfs",
    "kill"};  // an interrupted import stops the mkfs.ext4 it started (image/store.cc)

// Sanitizer runtimes (ASan, TSan) make calls of their own inside
// interceptors, e.g. pipe2 to probe whether memory is readable.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

Status allow(scmp_filter_ctx ctx, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    int nr = seccomp_syscall_resolve_name(n);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    if (rc != 0) return make_error(ErrorCode::kIo, "seccomp: allow {}: {}", n, std::strerror(-rc));
  }
  return {};
}

// ioctl only with these request numbers.
Status allow_ioctls(scmp_filter_ctx ctx, std::initializer_list<unsigned long> requests) {
  for (unsigned long r : requests) {
    scmp_arg_cmp request{1, SCMP_CMP_MASKED_EQ, 0xffffffffu, r};  // argument 1, low 32 bits
    int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, &request);
    if (rc != 0) return make_error(ErrorCode::kIo, "seccomp: allow ioctl {:#x}: {}", r, std::strerror(-rc));
  }
  return {};
}

// Every request of one ioctl family (the request's type byte): KVM's 0xAE
// holds every request capture needs, and nothing of terminals or files.
Status allow_ioctl_family(scmp_filter_ctx ctx, unsigned type) {
  scmp_arg_cmp request{1, SCMP_CMP_MASKED_EQ, _IOC_TYPEMASK << _IOC_TYPESHIFT, type << _IOC_TYPESHIFT};
  int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, &request);
  if (rc != 0) return make_error(ErrorCode::kIo, "seccomp: allow ioctl family {:#x}: {}", type, std::strerror(-rc));
  return {};
}

// Threads, never processes. clone3 passes its flags in memory, where a
// filter cannot read them: it answers ENOSYS, and glibc then creates the
// thread with clone, allowed only with CLONE_THREAD. fork, vfork and
// posix_spawn are refused.
Status allow_threads_only(scmp_filter_ctx ctx) {
  int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  if (rc != 0) return make_error(ErrorCode::kIo, "seccomp: clone3: {}", std::strerror(-rc));
  scmp_arg_cmp thread{0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD};
  rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1, &thread);
  if (rc != 0) return make_error(ErrorCode::kIo, "seccomp: clone: {}", std::strerror(-rc));
  return {};
}

// The KVM requests capture makes (every register of every vCPU and device),
// a reflink for diff snapshots, a terminal probe, and a socket's
// non-blocking mode as Boost.Asio sets it: no other ioctl.
Status allow_capture_ioctls(scmp_filter_ctx ctx) {
  SNAPVM_CHECK_OK(allow_ioctl_family(ctx, KVMIO));
  return allow_ioctls(ctx, {FICLONE, TCGETS, FIONBIO, FIONREAD});
}

// What building or restoring a machine asks beyond capture: KVM (the same
// family), taps, and a userfaultfd page server's registration.
Status allow_build_ioctls(scmp_filter_ctx ctx) {
  SNAPVM_CHECK_OK(allow_capture_ioctls(ctx));
  SNAPVM_CHECK_OK(allow_ioctls(ctx, {TUNSETIFF, TUNSETVNETHDRSZ, TUNSETOFFLOAD, TUNGETIFF}));
  return allow_ioctl_family(ctx, UFFDIO);
}

// What mkfs.ext4 asks of the filter it inherits (measured with strace -f
// on e2fsprogs 1.47): its start (set_tid_address, arch_prctl on x86_64),
// whether it may dump core, and block-device and terminal probes that a
// regular file answers with ENOTTY.
Status allow_mkfs(scmp_filter_ctx ctx) {
  SNAPVM_CHECK_OK(allow(ctx, {"set_tid_address", "arch_prctl"}));
  scmp_arg_cmp dumpable{0, SCMP_CMP_EQ, PR_GET_DUMPABLE, 0};
  int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, &dumpable);
  if (rc != 0) return make_error(ErrorCode::kIo, "seccomp: prctl: {}", std::strerror(-rc));
  return allow_ioctls(ctx, {BLKSSZGET, BLKPBSZGET, BLKDISCARDZEROES, BLKROGET, BLKGETSIZE64, TCGETS});
}

}  // namespace

const char* name(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::kMain: return "main";
    case ThreadKind::kVcpu: return "vCPU";
    case ThreadKind::kDevice: return "device";
    case ThreadKind::kControl: return "control";
    case ThreadKind::kApi: return "API";
    case ThreadKind::kBuild: return "build";
    case ThreadKind::kPool: return "pool";
    case ThreadKind::kImport: return "import";
  }
  return "?";
}

Status enable(Mode mode) {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno_error("prctl(PR_SET_NO_NEW_PRIVS)");
  for (int nr = 0; nr < kNames; ++nr) {
    char* n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    if (n != nullptr) {
      std::strncpy(g_names[nr], n, sizeof g_names[nr] - 1);
      std::free(n);
    }
  }
  // glibc's own housekeeping must never meet a filter. Each thread would get
  // a malloc arena of its own, and the first time a thread's arena shrinks
  // (it freed large blocks, or it exits) malloc opens
  // /proc/sys/vm/overcommit_memory: that open, in a device thread, ended
  // restored VMs with status 159 when their guest powered off. With one
  // arena no thread's heap ever shrinks that way (the main heap trims with
  // brk); each thread keeps its cache of small blocks. Set before the first
  // thread allocates: an arena made earlier would be handed on.
  // Under ASan or TSan malloc is the sanitizer's, which keeps no such
  // arenas and answers 0 here: nothing to fix, so the answer is not checked.
  (void)::mallopt(M_ARENA_MAX, 1);
  // backtrace() loads the unwinder on first use, which the filters would
  // refuse inside the SIGSYS handler: load it now.
  void* frame[1];
  (void)::backtrace(frame, 1);
  struct sigaction sa {};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGSYS, &sa, nullptr) != 0) return errno_error("sigaction(SIGSYS)");
  g_mode = mode;
  g_enabled = true;
  return {};
}

bool enabled() { return g_enabled.load(); }

Status enter(ThreadKind kind) {
  if (!g_enabled.load()) return {};
  scmp_filter_ctx ctx = seccomp_init(g_mode == Mode::kEnforce ? SCMP_ACT_TRAP : SCMP_ACT_LOG);
  if (ctx == nullptr) return make_error(ErrorCode::kIo, "seccomp_init failed");
  struct Release {
    scmp_filter_ctx c;
    ~Release() { seccomp_release(c); }
  } release{ctx};
  SNAPVM_CHECK_OK(allow(ctx, kCommon));
  if (kSanitized) SNAPVM_CHECK_OK(allow(ctx, {"pipe2", "pipe", "sched_getaffinity", "getpid", "readlinkat"}));
  switch (kind) {
    // TCGETS: stdio asks whether the console is a terminal on first use.
    case ThreadKind::kMain:
      SNAPVM_CHECK_OK(allow(ctx, {"unlinkat", "unlink", "openat", "fsync", "fdatasync"}));
      // Stopping the Firecracker API's event loop wakes it through epoll.
      SNAPVM_CHECK_OK(allow(ctx, {"epoll_ctl"}));
      SNAPVM_CHECK_OK(allow_ioctls(ctx, {TCGETS}));
      break;
    case ThreadKind::kVcpu:
      // Block requests are served on the notifying vCPU; a virtio-net
      // driver that starts tells the tap its offloads from there too.
      SNAPVM_CHECK_OK(allow(ctx, {"fsync", "fdatasync"}));
      SNAPVM_CHECK_OK(allow_ioctls(ctx, {KVM_RUN, KVM_IRQ_LINE, TCGETS, TUNSETOFFLOAD}));
#if defined(__x86_64__)
      // A triple fault is reported with where it happened, read on the
      // vCPU that took it (Platform::describe_vcpu): read-only requests.
      SNAPVM_CHECK_OK(allow_ioctls(ctx, {KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_VCPU_EVENTS}));
#endif
      break;
    case ThreadKind::kDevice:
      SNAPVM_CHECK_OK(allow(ctx, kSockets));
      SNAPVM_CHECK_OK(allow_ioctls(ctx, {KVM_IRQ_LINE, TCGETS}));
      break;
    case ThreadKind::kControl:
      // Capture reads every register of every vCPU and device fd: every
      // KVM request, but no other family. Snapshot writers are threads.
      SNAPVM_CHECK_OK(allow(ctx, kSockets));
      SNAPVM_CHECK_OK(allow(ctx, kFiles));
      SNAPVM_CHECK_OK(allow_threads_only(ctx));
      SNAPVM_CHECK_OK(allow_capture_ioctls(ctx));
      break;
    case ThreadKind::kApi:
      // The control thread's calls for snapshots (capture, files, writer
      // threads; a logger's or metrics' file opened), but sockets only as
      // the server of the API's own: no new socket, no connect.
      SNAPVM_CHECK_OK(allow(ctx, kServedSockets));
      SNAPVM_CHECK_OK(allow(ctx, kFiles));
      SNAPVM_CHECK_OK(allow_threads_only(ctx));
      SNAPVM_CHECK_OK(allow_capture_ioctls(ctx));
      break;
    case ThreadKind::kBuild:
      // Every thread the machine starts inherits this filter beneath its
      // own, so it holds what each of them needs; what it refuses is
      // everything a VMM never does (programs, processes, mounts, ptrace,
      // other ioctl families, ...).
      SNAPVM_CHECK_OK(allow(ctx, kSockets));
      SNAPVM_CHECK_OK(allow(ctx, kFiles));
      SNAPVM_CHECK_OK(allow(ctx, kBuild));
      SNAPVM_CHECK_OK(allow_threads_only(ctx));
      SNAPVM_CHECK_OK(allow_build_ioctls(ctx));
      break;
    case ThreadKind::kPool:
      // Requests from the pool's socket: resume and pause clones through
      // their control sockets, stop them; the clones themselves are
      // started by the pool's refill thread, which is not filtered.
      SNAPVM_CHECK_OK(allow(ctx, kSockets));
      SNAPVM_CHECK_OK(allow(ctx, {"kill", "unlink", "unlinkat", "rmdir"}));
      SNAPVM_CHECK_OK(allow_threads_only(ctx));
      break;
    case ThreadKind::kImport:
      // Files only: no socket (a hostile archive reaches nothing on the
      // network or on this host's sockets), no ioctl, no ptrace or mount.
      // mkfs.ext4 is the one program started (and it inherits the filter).
      SNAPVM_CHECK_OK(allow(ctx, kFiles));
      SNAPVM_CHECK_OK(allow(ctx, kImportFiles));
      SNAPVM_CHECK_OK(allow(ctx, {"clone", "clone3"}));
      SNAPVM_CHECK_OK(allow_mkfs(ctx));
      break;
  }
  // Named threads show up in top -H, in /proc and in the kernel's seccomp
  // log (named before the filter, which does not allow prctl).
  std::string thread_name = std::string("snapvm-") + name(kind);
  ::prctl(PR_SET_NAME, thread_name.c_str());
  int rc = seccomp_load(ctx);
  if (rc != 0) return make_error(ErrorCode::kIo, "seccomp_load for the {} thread: {}", name(kind), std::strerror(-rc));
  t_kind = name(kind);
  return {};
}

void enter_or_die(ThreadKind kind) {
  auto s = enter(kind);
  if (!s) {
    std::string line = "snapvm: cannot filter the " + std::string(name(kind)) + " thread: " + s.error().describe() + "\n";
    (void)!::write(2, line.data(), line.size());
    ::_exit(1);
  }
}

}  // namespace snapvm::sandbox
