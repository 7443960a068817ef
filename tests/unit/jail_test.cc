// The jailer without root: what its child does before it builds the jail
// (only stdin, stdout, stderr and the binary it will exec stay open, and it
// leads a session of its own; run in a forked child, as the jailer runs
// it), and which VMM command lines it takes.
#include <gtest/gtest.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sandbox/jail.h"

namespace snapvm {
namespace {

// What the child saw after detach_from_parent, written to `report`.
std::string detach_in_child(int inherited_fd, int report_fd, int keep_fd) {
  pid_t pid = ::fork();
  if (pid == 0) {
    std::string seen;
    if (auto s = sandbox::detach_from_parent(keep_fd); !s) {
      seen = "error: " + s.error().describe();
    } else {
      seen += ::fcntl(inherited_fd, F_GETFD) < 0 && errno == EBADF ? "inherited closed" : "inherited open";
      seen += ::fcntl(keep_fd, F_GETFD) >= 0 ? ", kept open" : ", kept closed";
      seen += ::getsid(0) == ::getpid() ? ", session leader" : ", in the parent's session";
      seen += ::getpgid(0) == ::getpid() ? ", group leader" : ", in the parent's group";
      // Everything still open (the listing's own descriptor aside).
      std::set<int> open;
      if (DIR* d = ::opendir("/proc/self/fd")) {
        while (dirent* e = ::readdir(d)) {
          if (e->d_name[0] != '.' && std::stoi(e->d_name) != ::dirfd(d)) open.insert(std::stoi(e->d_name));
        }
        ::closedir(d);
      }
      seen += ", open:";
      for (int fd : open) seen += " " + std::to_string(fd);
    }
    (void)!::write(report_fd, seen.data(), seen.size());
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return std::to_string(status);
}

TEST(JailHandoff, ClosesEveryInheritedDescriptorButTheBinaryAndStartsASession) {
  int report[2];
  ASSERT_EQ(::pipe(report), 0);  // no O_CLOEXEC: inherited, as a careless parent leaves it
  int inherited = ::open("/", O_RDONLY | O_DIRECTORY);  // a way out of any chroot
  ASSERT_GE(inherited, 0);
  int binary = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(binary, 0);
  // The report pipe is the descriptor kept, so the child can still answer.
  EXPECT_EQ(detach_in_child(inherited, report[1], report[1]), "0");
  ::close(report[1]);
  char buf[512] = {};
  ssize_t n = ::read(report[0], buf, sizeof buf - 1);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)),
            "inherited closed, kept open, session leader, group leader, open: 0 1 2 " + std::to_string(report[1]));
  ::close(report[0]);
  ::close(inherited);
  ::close(binary);
}

TEST(JailHandoff, RefusesToKeepAStandardDescriptor) {
  auto s = sandbox::detach_from_parent(2);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().describe().find("0, 1, 2"), std::string::npos) << s.error().describe();
}

sandbox::JailConfig jail_of(std::vector<std::string> argv) {
  sandbox::JailConfig c;
  c.id = "fc";
  c.uid = c.gid = 1000;
  c.argv = std::move(argv);
  return c;
}

TEST(JailConfig, TakesFirecrackerWithItsApiSocketInsideTheJail) {
  EXPECT_TRUE(sandbox::validate(jail_of({"firecracker", "--api-sock", "/fc.sock"})));
  EXPECT_TRUE(sandbox::validate(jail_of({"run", "--kernel", "/vmlinuz"})));
  EXPECT_EQ(sandbox::api_socket_in_jail({"firecracker", "--id", "a"}), "/run/firecracker.socket");
  EXPECT_EQ(sandbox::api_socket_in_jail({"firecracker", "--api-sock", "/x/fc.sock"}), "/x/fc.sock");
  EXPECT_EQ(sandbox::api_socket_in_jail({"firecracker", "--api-sock=fc.sock"}), "/fc.sock");
  EXPECT_EQ(sandbox::api_socket_in_jail({"firecracker", "--no-api", "--config-file", "/c.json"}), std::nullopt);
  EXPECT_EQ(sandbox::api_socket_in_jail({"run", "--api", "/vm.sock"}), std::nullopt);
  for (const char* sock : {"/../etc/fc.sock", "/dev/fc.sock", "/a/./b"}) {
    auto refused = sandbox::validate(jail_of({"firecracker", "--api-sock", sock}));
    ASSERT_FALSE(refused) << sock;
    EXPECT_NE(refused.error().describe().find("--api-sock"), std::string::npos) << refused.error().describe();
  }
  auto other = sandbox::validate(jail_of({"inspect", "/x.snap"}));
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().describe().find("firecracker"), std::string::npos) << other.error().describe();
}

}  // namespace
}  // namespace snapvm
