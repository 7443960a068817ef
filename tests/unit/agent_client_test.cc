// The host side of `snapvm cp VM:PATH DEST` against a stand-in agent on the
// VM's vsock socket (Firecracker's CONNECT handshake, then agent frames):
// what lands on the host, and what a hostile directory or guest can make
// it do.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/client.h"
#include "agent/protocol.h"
#include "base/unix_socket.h"
#include "test_util.h"

namespace snapvm {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Serves one GET on `path`: answers the CONNECT line, reads the request,
// sends `frames`, then holds the connection open until the client leaves.
class FakeAgent {
 public:
  FakeAgent(const std::string& path, std::vector<uint8_t> frames) : frames_(std::move(frames)) {
    auto l = listen_unix(path, 4, 0600, "vsock socket");
    EXPECT_TRUE(l) << l.error().describe();
    if (l) listener_ = std::move(*l);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeAgent() { thread_.join(); }
  std::string request() const { return request_; }

 private:
  void serve() {
    pollfd p{listener_.get(), POLLIN, 0};
    if (::poll(&p, 1, 10'000) != 1) return;
    UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    std::string line;
    char ch;
    while (line.find('\n') == std::string::npos && ::recv(c.get(), &ch, 1, 0) == 1) line += ch;
    if (line != "CONNECT 1024\n") return;
    (void)!::send(c.get(), "OK 1\n", 5, MSG_NOSIGNAL);
    agent::FrameReader reader;
    uint8_t buf[4096];
    std::optional<agent::FrameReader::Message> m;
    while (!(m = reader.next())) {
      ssize_t n = ::recv(c.get(), buf, sizeof buf, 0);
      if (n <= 0) return;
      reader.feed({buf, static_cast<size_t>(n)});
    }
    request_ = m->text();
    (void)!::send(c.get(), frames_.data(), frames_.size(), MSG_NOSIGNAL);
    while (::recv(c.get(), buf, sizeof buf, 0) > 0) {
    }
  }

  UniqueFd listener_;
  std::vector<uint8_t> frames_;
  std::string request_;
  std::thread thread_;
};

std::vector<uint8_t> data_frames(const std::vector<std::string>& chunks, bool end = true) {
  std::vector<uint8_t> out;
  for (const auto& c : chunks) agent::append_frame(out, agent::Frame::kData, c);
  if (end) agent::append_frame(out, agent::Frame::kDataEnd, std::string());
  return out;
}

std::string contents(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

class GetFile : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::string vsock = dir.file("vm.vsock");
  std::string dest = dir.file("out.bin");
};

// `snapvm cp` wrote DEST.snapvm-part with O_CREAT|O_TRUNC, following links:
// whoever could write DEST's directory chose which file received the
// guest's bytes. Now the copy never opens a name: DEST is replaced (a
// symlink there included) and what the links point to stays as it was.
TEST_F(GetFile, SymlinksPlantedAtOrBesideTheTargetAreNeverFollowed) {
  const std::string victim = dir.file("victim"), victim2 = dir.file("victim2");
  std::ofstream(victim) << "root's file";
  std::ofstream(victim2) << "another file";
  ASSERT_EQ(::symlink(victim.c_str(), (dest + ".snapvm-part").c_str()), 0);
  ASSERT_EQ(::symlink(victim2.c_str(), dest.c_str()), 0);
  {
    FakeAgent agent(vsock, data_frames({"guest ", "bytes"}));
    auto r = agent::get_file(vsock, "/etc/shadow", dest);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(*r, 11u);
  }
  EXPECT_EQ(contents(victim), "root's file");
  EXPECT_EQ(contents(victim2), "another file");
  struct stat st {};
  ASSERT_EQ(::lstat(dest.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode)) << "the symlink at DEST was replaced, not written through";
  EXPECT_EQ(contents(dest), "guest bytes");
  EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"out.bin", "out.bin.snapvm-part", "victim", "victim2",
                                                            "vm.vsock"}));
}

TEST_F(GetFile, AFileOverTheLimitIsRefusedAndLeavesNothing) {
  agent::GetOptions o;
  o.max_bytes = 1000;
  {
    FakeAgent agent(vsock, data_frames({std::string(600, 'a'), std::string(600, 'b')}));
    auto r = agent::get_file(vsock, "/big", dest, o);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().describe(), "/big is over the limit of 1000 bytes (--max-size); nothing was kept");
  }
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"vm.vsock"});
  {
    FakeAgent agent(vsock, data_frames({std::string(600, 'a'), std::string(400, 'b')}));
    auto r = agent::get_file(vsock, "/exact", dest, o);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(*r, 1000u);
  }
}

TEST_F(GetFile, AGuestThatFallsSilentEndsTheCopyInOneLineAndLeavesNothing) {
  agent::GetOptions o;
  o.stall_timeout = 300ms;
  FakeAgent agent(vsock, data_frames({"the first half"}, /*end=*/false));
  const auto t0 = std::chrono::steady_clock::now();
  auto r = agent::get_file(vsock, "/slow", dest, o);
  ASSERT_FALSE(r);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_EQ(r.error().describe(), "the guest agent sent nothing for 300 ms; gave up");
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"vm.vsock"});
}

TEST_F(GetFile, AnAgentRefusalLeavesNothing) {
  std::vector<uint8_t> frames = data_frames({"partial"}, /*end=*/false);
  agent::append_frame(frames, agent::Frame::kError, std::string(R"({"message":"read /x: Input/output error"})"));
  FakeAgent agent(vsock, frames);
  auto r = agent::get_file(vsock, "/x", dest);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().describe(), "guest: read /x: Input/output error");
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"vm.vsock"});
}

}  // namespace
}  // namespace snapvm
