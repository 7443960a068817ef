#include "sandbox/jail.h"

#include <elf.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/file_io.h"
#include "base/unique_fd.h"

namespace snapvm::sandbox {
namespace {

namespace fs = std::filesystem;

bool safe_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  }
  return true;
}

bool safe_jail_path(const std::string& p) {
  if (p.size() < 2 || p[0] != '/' || p.find('\0') != std::string::npos) return false;
  for (const auto& part : fs::path(p)) {
    if (part == ".." || part == ".") return false;
  }
  return p != "/dev" && p.rfind("/dev/", 0) != 0;
}

Status write_text(const std::string& path, const std::string& text) {
  auto fd = open_file(path, O_WRONLY | O_CLOEXEC);
  if (!fd) return tl::unexpected(std::move(fd.error()));
  if (::write(fd->get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return errno_error(fmt::format("write '{}' to {}", text, path));
  }
  return {};
}

// The child's side: everything here runs in the new namespaces, before the
// VMM. Failures print one line and exit 125 (the jail could not be built).
[[noreturn]] void die(const std::string& what) {
  std::string line = "snapvm jail: " + what + ": " + std::strerror(errno) + "\n";
  (void)!::write(2, line.data(), line.size());
  ::_exit(125);
}

void check(bool ok, const std::string& what) {
  if (!ok) die(what);
}

[[noreturn]] void enter_jail(const JailConfig& c, const std::string& root, int exe_fd, int sync_fd) {
  char go;
  check(::read(sync_fd, &go, 1) == 1, "wait for the cgroup");
  ::close(sync_fd);
  if (auto s = detach_from_parent(exe_fd); !s) {
    std::string line = "snapvm jail: " + s.error().describe() + "\n";
    (void)!::write(2, line.data(), line.size());
    ::_exit(125);
  }
  int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (c.network ? 0 : CLONE_NEWNET);
  check(::unshare(flags) == 0, "unshare namespaces");
  check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0, "make / private");
  check(::mount(root.c_str(), root.c_str(), nullptr, MS_BIND | MS_REC, nullptr) == 0, "bind the jail root");
  for (const auto& f : c.files) {
    std::string target = root + f.jail_path;
    fs::create_directories(fs::path(target).parent_path());
    struct stat st {};
    check(::stat(f.host_path.c_str(), &st) == 0, "stat " + f.host_path);
    if (S_ISDIR(st.st_mode)) {
      fs::create_directories(target);
    } else {
      int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
      check(fd >= 0, "create " + target);
      ::close(fd);
    }
    check(::mount(f.host_path.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) == 0, "bind " + f.host_path);
    unsigned long ro = f.writable ? 0 : MS_RDONLY;
    check(::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | ro, nullptr) == 0,
          "remount " + target);
  }
  // /dev holds /dev/kvm (for the jail's uid only) and /dev/null, nothing else.
  std::string dev = root + "/dev";
  ::mkdir(dev.c_str(), 0755);
  check(::mount("tmpfs", dev.c_str(), "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") == 0, "mount /dev");
  std::string kvm = dev + "/kvm", null = dev + "/null";
  check(::mknod(kvm.c_str(), S_IFCHR | 0600, makedev(10, 232)) == 0, "mknod /dev/kvm");
  check(::chown(kvm.c_str(), c.uid, c.gid) == 0, "chown /dev/kvm");
  check(::mknod(null.c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0 && ::chmod(null.c_str(), 0666) == 0, "mknod /dev/null");

  check(::chdir(root.c_str()) == 0, "chdir to the jail");
  ::mkdir(".old-root", 0700);
  if (::syscall(SYS_pivot_root, ".", ".old-root") == 0) {
    check(::chdir("/") == 0, "chdir /");
    check(::umount2("/.old-root", MNT_DETACH) == 0, "detach the old root");
    ::rmdir("/.old-root");
  } else {
    // The initial ramfs cannot be pivoted away from (a host booted from an
    // initramfs, like our test host): move the jail over / and chroot, as
    // switch_root does. Without CAP_SYS_CHROOT the VMM cannot climb out.
    ::rmdir(".old-root");
    check(::mount(".", "/", nullptr, MS_MOVE, nullptr) == 0, "move the jail to /");
    check(::chroot(".") == 0 && ::chdir("/") == 0, "chroot into the jail");
  }
  std::string host = "snapvm-" + c.id;
  (void)!::sethostname(host.c_str(), host.size());

  rlimit files{c.max_open_files, c.max_open_files}, no_core{0, 0};
  check(::setrlimit(RLIMIT_NOFILE, &files) == 0, "limit open files");
  check(::setrlimit(RLIMIT_CORE, &no_core) == 0, "disable core dumps");
  check(::setgroups(0, nullptr) == 0, "drop supplementary groups");
  check(::setresgid(c.gid, c.gid, c.gid) == 0, "set the jail's gid");
  check(::setresuid(c.uid, c.uid, c.uid) == 0, "set the jail's uid");
  check(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no new privileges");

  std::vector<char*> argv;
  std::string self = "snapvm";
  argv.push_back(self.data());
  std::vector<std::string> args = c.argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string path_env = "PATH=/";
  char* envp[] = {path_env.data(), nullptr};
  ::syscall(SYS_execveat, exe_fd, "", argv.data(), envp, AT_EMPTY_PATH);
  die("exec the VMM");
}

pid_t g_child = -1;

// The jail holds no shared libraries: the VMM must be linked statically.
// Returns the program interpreter a dynamic executable asks for, "" for a
// static one, "?" for a file that is no ELF executable.
std::string interpreter_of(int fd) {
  Elf64_Ehdr eh{};
  if (::pread(fd, &eh, sizeof eh, 0) != sizeof eh || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return "?";
  for (int i = 0; i < eh.e_phnum && i < 64; ++i) {
    Elf64_Phdr ph{};
    if (::pread(fd, &ph, sizeof ph, static_cast<off_t>(eh.e_phoff + i * sizeof ph)) != sizeof ph) return "";
    if (ph.p_type != PT_INTERP || ph.p_filesz == 0 || ph.p_filesz > 256) continue;
    std::string interp(ph.p_filesz, '\0');
    if (::pread(fd, interp.data(), interp.size(), static_cast<off_t>(ph.p_offset)) != static_cast<ssize_t>(interp.size())) {
      return "?";
    }
    return interp.c_str();
  }
  return "";
}

// The build tree tools/build.sh static makes on this machine: build-ARCH-static.
constexpr const char* kStaticTreeArch =
#if defined(__aarch64__)
    "aarch64";
#else
    "x86_64";
#endif

// What runs in the jail: this snapvm if it is static; else a static build
// installed beside it, <dir of this executable>/../lib/snapvm/snapvm-static
// (the Debian package ships one: tools/package.sh), which is as trusted as
// this binary (the same directory tree); else one line saying how to get one.
Result<UniqueFd> open_static_vmm() {
  UniqueFd self(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  if (!self.valid()) return errno_error("open the snapvm binary");
  const std::string interp = interpreter_of(self.get());
  if (interp.empty()) return self;
  std::error_code ec;
  const fs::path beside =
      (fs::read_symlink("/proc/self/exe", ec).parent_path() / "../lib/snapvm/snapvm-static").lexically_normal();
  UniqueFd other(::open(beside.c_str(), O_RDONLY | O_CLOEXEC));
  if (other.valid() && interpreter_of(other.get()).empty()) return other;
  return make_error(ErrorCode::kUnsupported,
                    "the jail holds no shared libraries, and this snapvm needs {} while {} {}: build a static one "
                    "(tools/build.sh static) and run its build-{}-static/bin/snapvm jail, or install the package "
                    "(tools/package.sh), which ships it",
                    interp == "?" ? "its loader" : interp, beside.string(),
                    other.valid() ? "is no static executable" : "does not exist", kStaticTreeArch);
}

// Closes [from, to] with close_range, or one by one where the kernel has
// none (before 5.9).
Status close_fds(unsigned from, unsigned to) {
  if (from > to) return {};
  if (::syscall(SYS_close_range, from, to, 0) == 0) return {};
  if (errno != ENOSYS) return errno_error("close_range");
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return errno_error("getrlimit");
  const unsigned last = std::min<unsigned>(to, lim.rlim_cur == RLIM_INFINITY ? 1u << 20 : static_cast<unsigned>(lim.rlim_cur));
  for (unsigned fd = from; fd <= last && fd >= from; ++fd) ::close(static_cast<int>(fd));
  return {};
}

// Makes the directories above `jail_path` inside the jail, owned by the
// jail's uid (0700), so the VMM can create its socket there. Walked with
// O_NOFOLLOW from the jail root: nothing already there (the jail's uid owns
// the root) can turn the walk into a mkdir or chown outside it.
Status make_parent_dirs(const std::string& root, const std::string& jail_path, uid_t uid, gid_t gid) {
  auto dir = open_file(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) return tl::unexpected(std::move(dir.error()));
  UniqueFd at = std::move(*dir);
  const fs::path parent = fs::path(jail_path).parent_path().relative_path();
  for (const auto& part : parent) {
    const std::string name = part.string();
    if (::mkdirat(at.get(), name.c_str(), 0700) == 0) {
      UniqueFd made(::openat(at.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!made.valid() || ::fchown(made.get(), uid, gid) != 0) return errno_error("create " + jail_path + "'s directory");
      at = std::move(made);
      continue;
    }
    if (errno != EEXIST) return errno_error("create " + jail_path + "'s directory");
    UniqueFd next(::openat(at.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid()) return errno_error("open " + jail_path + "'s directory");
    at = std::move(next);
  }
  return {};
}

}  // namespace

std::optional<std::string> api_socket_in_jail(const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0] != "firecracker") return std::nullopt;
  std::string sock = "/run/firecracker.socket";  // Firecracker's default, as `snapvm firecracker` has it
  for (size_t i = 1; i < argv.size(); ++i) {
    if (argv[i] == "--no-api") return std::nullopt;
    if (argv[i] == "--api-sock" && i + 1 < argv.size()) sock = argv[++i];
    if (argv[i].rfind("--api-sock=", 0) == 0) sock = argv[i].substr(11);
  }
  // The VMM's working directory is the jail's /.
  return sock.empty() || sock[0] == '/' ? sock : "/" + sock;
}

Status detach_from_parent(int keep_fd) {
  if (keep_fd < 3) return make_error(ErrorCode::kInvalidArgument, "descriptor {} to keep is one of 0, 1, 2", keep_fd);
  const unsigned keep = static_cast<unsigned>(keep_fd);
  SNAPVM_CHECK_OK(close_fds(3, keep - 1));
  SNAPVM_CHECK_OK(close_fds(keep + 1, ~0u));
  if (::setsid() < 0) return errno_error("setsid");
  return {};
}

std::string jail_dir(const JailConfig& c) { return c.root + "/" + c.id + "/root"; }

Status validate(const JailConfig& c) {
  if (!safe_id(c.id)) return make_error(ErrorCode::kInvalidArgument, "jail id '{}' must be 1 to 64 of [A-Za-z0-9_-]", c.id);
  if (c.root.empty() || c.root[0] != '/') {
    return make_error(ErrorCode::kInvalidArgument, "jail root '{}' must be an absolute path", c.root);
  }
  if (c.uid == 0 || c.gid == 0) {
    return make_error(ErrorCode::kInvalidArgument, "the jail's uid and gid must not be 0 (root)");
  }
  if (c.argv.empty() || (c.argv[0] != "run" && c.argv[0] != "restore" && c.argv[0] != "firecracker")) {
    return make_error(ErrorCode::kInvalidArgument,
                      "give the VMM's command line after --: run ..., restore ... or firecracker ...");
  }
  if (auto sock = api_socket_in_jail(c.argv); sock && !safe_jail_path(*sock)) {
    return make_error(ErrorCode::kInvalidArgument, "--api-sock '{}' must be a path inside the jail, without '..', "
                      "outside /dev", *sock);
  }
  for (const auto& f : c.files) {
    if (!safe_jail_path(f.jail_path)) {
      return make_error(ErrorCode::kInvalidArgument, "jail path '{}' must be absolute, without '..', outside /dev",
                        f.jail_path);
    }
    struct stat st {};
    if (::stat(f.host_path.c_str(), &st) != 0) return errno_error(fmt::format("jail file {}", f.host_path));
    // The VMM opens it as the jail's uid: say so now rather than fail inside.
    mode_t want = f.writable ? 06 : 04;
    mode_t have = st.st_uid == c.uid ? (st.st_mode >> 6) & 7 : st.st_gid == c.gid ? (st.st_mode >> 3) & 7 : st.st_mode & 7;
    if ((have & want) != want) {
      return make_error(ErrorCode::kFailedPrecondition, "jail file {} is not {} by uid {} / gid {} (chown or chmod it)",
                        f.host_path, f.writable ? "readable and writable" : "readable", c.uid, c.gid);
    }
  }
  if (c.memory_max && *c.memory_max < (16ull << 20)) {
    return make_error(ErrorCode::kInvalidArgument, "memory limit {} is below 16 MiB", *c.memory_max);
  }
  if (c.cpus && (*c.cpus <= 0 || *c.cpus > 1024)) {
    return make_error(ErrorCode::kInvalidArgument, "CPU limit {} is not in (0, 1024]", *c.cpus);
  }
  if (c.pids_max && *c.pids_max < 4) return make_error(ErrorCode::kInvalidArgument, "pids limit below 4");
  return {};
}

Result<int> run_jailed(const JailConfig& c) {
  SNAPVM_CHECK_OK(validate(c));
  if (::geteuid() != 0) return make_error(ErrorCode::kFailedPrecondition, "the jailer must run as root");
  auto vmm = open_static_vmm();
  if (!vmm) return tl::unexpected(std::move(vmm.error()));
  std::string dir = c.root + "/" + c.id, root = jail_dir(c);
  std::error_code ec;
  fs::create_directories(c.root, ec);
  if (::mkdir(dir.c_str(), 0711) != 0) {
    return errno_error(fmt::format("create the jail {} (is a VM with this id running?)", dir));
  }
  auto remove_jail = [&] { fs::remove_all(dir, ec); };
  if (::mkdir(root.c_str(), 0700) != 0 || ::chown(root.c_str(), c.uid, c.gid) != 0) {
    auto e = errno_error(fmt::format("create {}", root));
    remove_jail();
    return e;
  }
  if (auto sock = api_socket_in_jail(c.argv)) {
    if (auto made = make_parent_dirs(root, *sock, c.uid, c.gid); !made) {
      remove_jail();
      return tl::unexpected(std::move(made.error()).context("--api-sock"));
    }
  }

  // cgroup v2: the VMM's own group under snapvm/, limits written before it
  // joins, removed when it is gone.
  std::string cgroup;
  if (c.memory_max || c.cpus || c.pids_max) {
    std::string parent = c.cgroup_root + "/snapvm";
    cgroup = parent + "/" + c.id;
    auto setup = [&]() -> Status {
      struct statfs sfs {};
      if (::statfs(c.cgroup_root.c_str(), &sfs) != 0 || sfs.f_type != CGROUP2_SUPER_MAGIC) {
        return make_error(ErrorCode::kFailedPrecondition,
                          "{} is not a cgroup v2 mount (limits need one; see --cgroup-root)", c.cgroup_root);
      }
      std::string wanted;
      std::ifstream offered_in(c.cgroup_root + "/cgroup.controllers");
      std::string offered((std::istreambuf_iterator<char>(offered_in)), {});
      for (const char* ctl : {c.memory_max ? "memory" : "", c.cpus ? "cpu" : "", c.pids_max ? "pids" : ""}) {
        if (*ctl == '\0') continue;
        if ((" " + offered + " ").find(std::string(" ") + ctl) == std::string::npos) {
          return make_error(ErrorCode::kFailedPrecondition, "the cgroup v2 hierarchy at {} offers no '{}' controller",
                            c.cgroup_root, ctl);
        }
        wanted += std::string(wanted.empty() ? "+" : " +") + ctl;
      }
      SNAPVM_CHECK_OK(write_text(c.cgroup_root + "/cgroup.subtree_control", wanted));
      if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) return errno_error(fmt::format("create {}", parent));
      SNAPVM_CHECK_OK(write_text(parent + "/cgroup.subtree_control", wanted));
      if (::mkdir(cgroup.c_str(), 0755) != 0) return errno_error(fmt::format("create {}", cgroup));
      if (c.memory_max) {
        SNAPVM_CHECK_OK(write_text(cgroup + "/memory.max", std::to_string(*c.memory_max)));
        (void)write_text(cgroup + "/memory.swap.max", "0");  // no swap controller: nothing to limit
      }
      if (c.cpus) {
        uint64_t period = 100000, quota = static_cast<uint64_t>(std::llround(*c.cpus * period));
        SNAPVM_CHECK_OK(write_text(cgroup + "/cpu.max", fmt::format("{} {}", quota, period)));
      }
      if (c.pids_max) SNAPVM_CHECK_OK(write_text(cgroup + "/pids.max", std::to_string(*c.pids_max)));
      return {};
    };
    if (auto s = setup(); !s) {
      ::rmdir(cgroup.c_str());
      remove_jail();
      return tl::unexpected(std::move(s.error()).context("cgroup"));
    }
  }
  auto cleanup = [&] {
    if (!cgroup.empty()) {
      // Say so when the memory limit ended the VMM, before the group goes.
      std::ifstream events(cgroup + "/memory.events");
      std::string key;
      uint64_t n = 0;
      while (events >> key >> n) {
        if (key == "oom_kill" && n > 0) {
          std::string line = fmt::format("snapvm jail: the VMM of {} reached its memory limit ({} bytes) and the "
                                         "kernel killed it\n",
                                         c.id, c.memory_max.value_or(0));
          (void)!::write(2, line.data(), line.size());
        }
      }
      ::rmdir(cgroup.c_str());
    }
    remove_jail();
  };

  int exe = vmm->release();
  int sync[2];
  if (::pipe2(sync, O_CLOEXEC) != 0) {
    ::close(exe);
    auto e = errno_error("make the jail's start pipe");
    cleanup();
    return e;
  }
  // The child is PID 1 of a new PID namespace.
  if (::unshare(CLONE_NEWPID) != 0) {
    auto e = errno_error("unshare the PID namespace");
    cleanup();
    return e;
  }
  pid_t child = ::fork();
  if (child < 0) {
    auto e = errno_error("fork");
    cleanup();
    return e;
  }
  if (child == 0) {
    ::close(sync[1]);
    enter_jail(c, root, exe, sync[0]);
  }
  ::close(sync[0]);
  ::close(exe);
  g_child = child;
  if (!cgroup.empty()) {
    if (auto s = write_text(cgroup + "/cgroup.procs", std::to_string(child)); !s) {
      ::kill(child, SIGKILL);
      ::waitpid(child, nullptr, 0);
      cleanup();
      return tl::unexpected(std::move(s.error()).context("cgroup"));
    }
  }
  // PID 1 of a namespace ignores signals it has no handler for: pass an
  // interrupt on as SIGKILL (the VMM keeps nothing that needs an orderly end).
  struct sigaction sa {};
  sa.sa_handler = [](int) {
    if (g_child > 0) ::kill(g_child, SIGKILL);
  };
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  char go = 1;
  (void)!::write(sync[1], &go, 1);
  ::close(sync[1]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  cleanup();
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

}  // namespace snapvm::sandbox
