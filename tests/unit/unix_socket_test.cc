// Listening sockets never take a path from a live process.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "base/unix_socket.h"
#include "test_util.h"

namespace snapvm {
namespace {

TEST(UnixSocket, RefusesAPathALiveProcessServes) {
  test::TempDir dir;
  std::string path = dir.file("vm.sock");
  auto first = listen_unix(path, 4, 0600, "control socket");
  ASSERT_TRUE(first) << first.error().describe();
  auto second = listen_unix(path, 4, 0600, "control socket");
  ASSERT_FALSE(second) << "a second listener took over a live socket";
  EXPECT_NE(second.error().describe().find("in use by a running process"), std::string::npos)
      << second.error().describe();
  EXPECT_TRUE(connect_unix(path)) << "the first listener must still be reachable";
}

TEST(UnixSocket, ReplacesAStaleSocketAndRefusesOtherFiles) {
  test::TempDir dir;
  std::string path = dir.file("vm.sock");
  { ASSERT_TRUE(listen_unix(path, 4, 0600, "vsock socket")); }  // closed: the file stays, stale
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  auto again = listen_unix(path, 4, 0600, "vsock socket");
  ASSERT_TRUE(again) << again.error().describe();
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  std::string file = dir.file("notes.txt");
  std::ofstream(file) << "keep me";
  auto refused = listen_unix(file, 4, 0600, "vsock socket");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().describe().find("is not a socket"), std::string::npos);
  std::ifstream in(file);
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "keep me");
}

}  // namespace
}  // namespace snapvm
