// systemd's readiness protocol, spoken without libsystemd (base/sd_notify.h):
// a service manager's socket stands in as a bound datagram socket.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/sd_notify.h"
#include "base/unique_fd.h"
#include "test_util.h"

namespace snapvm {
namespace {

// A datagram socket bound at `address` ('@' for an abstract name), as
// systemd binds the one NOTIFY_SOCKET names.
UniqueFd bind_manager(const std::string& address) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd.valid());
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, address.data(), address.size());
  socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
  if (address[0] == '@') {
    a.sun_path[0] = '\0';
  } else {
    ++length;  // the terminating NUL
  }
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), length), 0) << std::strerror(errno);
  return fd;
}

std::string receive(int fd) {
  char buf[512];
  ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  return n < 0 ? "(nothing: " + std::string(std::strerror(errno)) + ")" : std::string(buf, static_cast<size_t>(n));
}

// Sets NOTIFY_SOCKET for one test, and restores it after.
class NotifySocketEnv {
 public:
  explicit NotifySocketEnv(const char* value) {
    if (const char* old = std::getenv("NOTIFY_SOCKET")) saved_ = old;
    if (value == nullptr) {
      ::unsetenv("NOTIFY_SOCKET");
    } else {
      ::setenv("NOTIFY_SOCKET", value, 1);
    }
  }
  ~NotifySocketEnv() {
    if (saved_.empty()) {
      ::unsetenv("NOTIFY_SOCKET");
    } else {
      ::setenv("NOTIFY_SOCKET", saved_.c_str(), 1);
    }
  }

 private:
  std::string saved_;
};

TEST(SdNotify, SendsReadyToThePathInNotifySocket) {
  test::TempDir dir;
  std::string path = dir.file("notify");
  UniqueFd manager = bind_manager(path);
  NotifySocketEnv env(path.c_str());
  auto n = ServiceNotifier::from_environment(/*unset_environment=*/false);
  ASSERT_TRUE(n) << n.error().describe();
  ASSERT_TRUE(n->enabled());
  ASSERT_TRUE(n->notify("READY=1\nSTATUS=2 clones ready"));
  EXPECT_EQ(receive(manager.get()), "READY=1\nSTATUS=2 clones ready");
  ASSERT_TRUE(n->notify("STOPPING=1"));
  EXPECT_EQ(receive(manager.get()), "STOPPING=1");
}

TEST(SdNotify, SendsToAnAbstractSocketNamedWithAt) {
  std::string name = "@snapvm-sd-notify-test-" + std::to_string(::getpid());
  UniqueFd manager = bind_manager(name);
  NotifySocketEnv env(name.c_str());
  auto n = ServiceNotifier::from_environment(/*unset_environment=*/true);
  ASSERT_TRUE(n) << n.error().describe();
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr) << "unset_environment keeps it from the processes started later";
  ASSERT_TRUE(n->notify("READY=1"));
  EXPECT_EQ(receive(manager.get()), "READY=1");
}

TEST(SdNotify, IsANoOpWithoutNotifySocket) {
  for (const char* value : {static_cast<const char*>(nullptr), ""}) {
    NotifySocketEnv env(value);
    auto n = ServiceNotifier::from_environment(/*unset_environment=*/false);
    ASSERT_TRUE(n) << n.error().describe();
    EXPECT_FALSE(n->enabled());
    EXPECT_TRUE(n->notify("READY=1"));
  }
  EXPECT_TRUE(ServiceNotifier().notify("STOPPING=1"));
}

TEST(SdNotify, NamesAnAddressItCannotUse) {
  const std::string too_long = "/" + std::string(200, 'x');
  for (const std::string& bad : {std::string("relative/path"), std::string("vsock:2:1234"), std::string("@"), too_long}) {
    auto n = ServiceNotifier::for_address(bad);
    ASSERT_FALSE(n) << bad;
    EXPECT_NE(n.error().describe().find("NOTIFY_SOCKET"), std::string::npos) << n.error().describe();
  }
  // A socket nobody binds: the send fails with a line naming it.
  test::TempDir dir;
  auto n = ServiceNotifier::for_address(dir.file("gone"));
  ASSERT_TRUE(n) << n.error().describe();
  auto sent = n->notify("READY=1");
  ASSERT_FALSE(sent);
  EXPECT_NE(sent.error().describe().find(dir.file("gone")), std::string::npos) << sent.error().describe();
}

}  // namespace
}  // namespace snapvm
