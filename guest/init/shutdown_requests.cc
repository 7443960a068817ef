#include "shutdown_requests.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace snapvm::guest {
namespace {

int g_signal_pipe[2] = {-1, -1};  // SIGINT handler -> watcher thread

void on_sigint(int) {
  const char c = 'i';
  (void)!::write(g_signal_pipe[1], &c, 1);
}

void console_line(const std::string& line) {
  int fd = ::open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return;
  std::string out = line + "\n";
  (void)!::write(fd, out.data(), out.size());
  ::close(fd);
}

bool has_power_key(int fd) {
  unsigned long keys[KEY_MAX / (8 * sizeof(unsigned long)) + 1] = {};
  if (::ioctl(fd, EVIOCGBIT(EV_KEY, sizeof keys), keys) < 0) return false;
  const size_t bits = 8 * sizeof(unsigned long);
  return (keys[KEY_POWER / bits] >> (KEY_POWER % bits)) & 1;
}

// Input devices that can report KEY_POWER (evdev nodes exist once the
// evdev and gpio_keys modules are loaded).
std::vector<int> open_power_keys() {
  std::vector<int> fds;
  for (int i = 0; i < 32; ++i) {
    std::string path = "/dev/input/event" + std::to_string(i);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) continue;
    if (has_power_key(fd)) {
      fds.push_back(fd);
    } else {
      ::close(fd);
    }
  }
  return fds;
}

void watch(std::vector<int> keys) {
  std::vector<pollfd> fds;
  fds.push_back({g_signal_pipe[0], POLLIN, 0});
  for (int fd : keys) fds.push_back({fd, POLLIN, 0});
  for (;;) {
    if (::poll(fds.data(), fds.size(), -1) < 0) continue;
    if (fds[0].revents & POLLIN) clean_shutdown("Ctrl+Alt+Del");
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      input_event ev[16];
      ssize_t n = ::read(fds[i].fd, ev, sizeof ev);
      for (ssize_t k = 0; k < n / static_cast<ssize_t>(sizeof ev[0]); ++k) {
        if (ev[k].type == EV_KEY && ev[k].code == KEY_POWER && ev[k].value == 1) clean_shutdown("power button");
      }
    }
  }
}

// Whether any process other than init is left. Kernel threads (an empty
// cmdline) do not count: kill(-1, 0) would, and never report none.
bool user_processes_left() {
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return false;
  bool found = false;
  while (dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 1) continue;
    char buf[1];
    int fd = ::open(("/proc/" + std::string(e->d_name) + "/cmdline").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    found = ::read(fd, buf, 1) == 1;
    ::close(fd);
    if (found) break;
  }
  ::closedir(proc);
  return found;
}

}  // namespace

void watch_shutdown_requests() {
  if (::pipe2(g_signal_pipe, O_CLOEXEC) != 0) return;
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  ::sigaction(SIGINT, &sa, nullptr);
  ::reboot(RB_DISABLE_CAD);
  std::vector<int> keys = open_power_keys();
  console_line("snapvm-init: clean shutdown on " + std::to_string(keys.size()) + " power key(s) and Ctrl+Alt+Del");
  std::thread(watch, std::move(keys)).detach();
}

void clean_shutdown(const char* why) {
  console_line(std::string("SNAPVM-GUEST-SHUTDOWN ") + why + ": stopping every process");
  ::kill(-1, SIGTERM);  // every process but init
  // A grace period for processes to finish writing, then no more waiting.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < deadline && user_processes_left()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(-1, SIGKILL);
  ::sync();
  console_line("SNAPVM-GUEST-SHUTDOWN filesystems synced, powering off");
  ::reboot(RB_POWER_OFF);
  for (;;) ::pause();
}

}  // namespace snapvm::guest
