// snapvm guest init (PID 1): mounts what a guest needs, loads the virtio
// and input modules that Debian's kernel keeps as modules, reports readiness
// on the console, serves the guest agent, and shuts down cleanly when the
// host presses the power button (shutdown_requests.h).
//
// Kernel command line switches:
//   snapvm.poweroff   power off right after reporting readiness (tests)
//   snapvm.reboot     reboot right after reporting readiness (tests: with
//                     x86's reboot=t that is a triple fault)
//   snapvm.image=DEV  mount the image on /dev/DEV for started programs
//                     (image_root.h)
//   snapvm.fill=MIB   write MIB MiB of pseudo-random bytes to /ram/fill (a
//                     ramfs: tmpfs would stop at half the RAM) before
//                     reporting readiness (benchmarks against VMMs that have
//                     no snapvm agent to ask)
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent.h"
#include "fill_memory.h"
#include "image_root.h"
#include "network.h"
#include "shutdown_requests.h"
#include "tcp_relay.h"
#include "vsock_connect.h"

namespace {

void log_console(const std::string& line) {
  int fd = ::open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) fd = STDOUT_FILENO;
  std::string out = line + "\n";
  (void)!::write(fd, out.data(), out.size());
  if (fd != STDOUT_FILENO) ::close(fd);
}

// Busybox provides the guest's userland (sh, coreutils) for exec requests.
void install_busybox() {
  if (::access("/bin/busybox", X_OK) != 0) return;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/busybox", "busybox", "--install", "-s", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status;
  ::waitpid(pid, &status, 0);
}

void mount_basics() {
  ::mkdir("/proc", 0555);
  ::mkdir("/sys", 0555);
  ::mkdir("/dev", 0755);
  ::mkdir("/tmp", 01777);
  ::mkdir("/run", 0755);
  ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  ::mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  ::mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, nullptr);
  ::mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, nullptr);
  ::mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, nullptr);
}

std::string read_file(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Loads every module a list names, in order, with finit_module. Missing
// files are skipped: a kernel with the driver built in needs no module.
int load_modules(const char* list_path) {
  std::ifstream list(list_path);
  std::string name;
  int loaded = 0;
  while (std::getline(list, name)) {
    if (name.empty()) continue;
    std::string path = "/lib/modules/" + name;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    if (::syscall(SYS_finit_module, fd, "", 0) == 0 || errno == EEXIST) {
      ++loaded;
    } else {
      log_console("snapvm-init: cannot load " + name + ": " + std::strerror(errno));
    }
    ::close(fd);
  }
  return loaded;
}

long mem_total_kb() {
  std::istringstream in(read_file("/proc/meminfo"));
  std::string key;
  long value = 0;
  while (in >> key >> value) {
    if (key == "MemTotal:") return value;
    in.ignore(256, '\n');
  }
  return 0;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// "vda:65536,vdb:2048": virtio disks and their sizes in 512-byte sectors.
std::string disks() {
  std::string out;
  for (char c = 'a'; c <= 'z'; ++c) {
    std::string name = std::string("vd") + c;
    std::string size = trim(read_file(("/sys/block/" + name + "/size").c_str()));
    if (size.empty()) break;
    out += (out.empty() ? "" : ",") + name + ":" + size;
  }
  return out.empty() ? "none" : out;
}

}  // namespace

int main(int argc, char** argv) {
  // The same binary serves as guest tools, by the name it is called.
  std::string self = argv[0];
  std::string tool = self.substr(self.find_last_of('/') + 1);
  if (tool == "vsock-connect") return snapvm::guest::vsock_connect_main(argc, argv);
  if (tool == "fill-memory") return snapvm::guest::fill_memory_main(argc, argv);
  if (tool == "probe-tcp") return snapvm::guest::probe_tcp_main(argc, argv);
  mount_basics();
  install_busybox();
  std::string cmdline = read_file("/proc/cmdline");
  int modules = load_modules("/lib/modules/load-order");
  // The image root's filesystems (ext4 and its helpers, overlay) are the
  // largest modules: only a guest that runs an image pays for loading them.
  if (cmdline.find("snapvm.image=") != std::string::npos) modules += load_modules("/lib/modules/load-order-image");
  snapvm::guest::watch_shutdown_requests();
  log_console(snapvm::guest::configure_network(cmdline));
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (std::string image = snapvm::guest::mount_image_root(cmdline); !image.empty()) log_console(image);
  std::string rng = trim(read_file("/sys/class/misc/hw_random/rng_current"));
  bool poweroff = cmdline.find("snapvm.poweroff") != std::string::npos;
  bool reboot = cmdline.find("snapvm.reboot") != std::string::npos;
  if (auto at = cmdline.find("snapvm.fill="); at != std::string::npos) {
    uint64_t mib = std::strtoull(cmdline.c_str() + at + 12, nullptr, 10);
    ::mkdir("/ram", 0700);
    ::mount("ramfs", "/ram", "ramfs", MS_NOSUID | MS_NODEV, nullptr);
    if (!snapvm::guest::fill_memory("/ram/fill", mib)) {
      log_console(std::string("snapvm-init: cannot fill /ram/fill: ") + std::strerror(errno));
    }
    log_console("SNAPVM-GUEST-FILLED mib=" + std::to_string(mib));
  }
  // Listening before readiness is reported: a host that saw the line can
  // connect at once.
  int agent = poweroff || reboot ? -1 : snapvm::guest::agent_listen();
  log_console("SNAPVM-GUEST-READY cpus=" + std::to_string(cpus) + " mem_kb=" + std::to_string(mem_total_kb()) +
              " modules=" + std::to_string(modules) + " disks=" + disks() + " rng=" + (rng.empty() ? "none" : rng) +
              " agent=" + (agent >= 0 ? "vsock:1024" : "none"));
  if (poweroff || reboot) {
    ::sync();
    ::reboot(poweroff ? RB_POWER_OFF : RB_AUTOBOOT);
  }
  if (agent >= 0) {
    if (::fork() == 0) snapvm::guest::serve_agent(agent);
    // Only the agent holds the listener: if it dies, connections are refused
    // (a clear error on the host) instead of queueing forever.
    ::close(agent);
  }
  // PID 1 must never exit, and reaps every orphan in the guest.
  for (;;) {
    int status;
    if (::wait(&status) < 0 && errno == ECHILD) ::pause();
  }
}
