// The Firecracker API's HTTP server on its Unix socket: which socket it
// takes, and what slow or idle clients can do to it. Requests are answered
// by the real Api over a backend that only says yes.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "base/unix_socket.h"
#include "firecracker/http_server.h"
#include "test_util.h"

namespace snapvm::firecracker {
namespace {

using namespace std::chrono_literals;

class YesBackend final : public VmBackend {
 public:
  Status start(const VmConfig&) override { return {}; }
  Status load_snapshot(const SnapshotLoadBody&) override { return {}; }
  Status pause() override { return {}; }
  Status resume() override { return {}; }
  Status create_snapshot(const SnapshotCreateBody&) override { return {}; }
  Status send_ctrl_alt_del() override { return {}; }
  Status replace_drive(size_t, const std::string&) override { return {}; }
  Status redirect_log(UniqueFd) override { return {}; }
  nlohmann::json metrics() override { return nlohmann::json::object(); }
};

constexpr std::string_view kGet = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

// What the server sends until it closes the connection or `limit` passes.
std::string read_until_closed(int fd, std::chrono::milliseconds limit) {
  std::string out;
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return out + "<still open>";
    char buf[1024];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// One request on a fresh connection: the status line of the answer, or
// what happened instead.
std::string status_line_of_a_request(const std::string& path) {
  auto c = connect_unix(path);
  if (!c) return "connect: " + c.error().describe();
  if (::send(c->get(), kGet.data(), kGet.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(kGet.size())) return "send failed";
  std::string reply;
  const auto until = std::chrono::steady_clock::now() + 2s;
  while (reply.find("\r\n") == std::string::npos && std::chrono::steady_clock::now() < until) {
    pollfd p{c->get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[512];
    ssize_t n = ::recv(c->get(), buf, sizeof buf, 0);
    if (n <= 0) return reply.empty() ? "closed without an answer" : reply;
    reply.append(buf, static_cast<size_t>(n));
  }
  return reply.substr(0, reply.find("\r\n"));
}

class FirecrackerHttp : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::string sock = dir.file("fc.sock");
  YesBackend backend;
  Api api{"vm-1", backend, 19};
};

// 16 idle connections held every slot; each newcomer was closed on arrival
// (0 of 72 legitimate requests served in 15 s). Now the connection idle
// longest makes way, and a request gets its answer.
TEST_F(FirecrackerHttp, IdleConnectionsDoNotLockOutARequest) {
  auto server = HttpServer::start(sock, api);
  ASSERT_TRUE(server) << server.error().describe();
  std::vector<UniqueFd> idle;
  for (int i = 0; i < 16; ++i) {
    auto c = connect_unix(sock);
    ASSERT_TRUE(c);
    idle.push_back(std::move(*c));
  }
  (void)!::send(idle[5].get(), "GET / HT", 8, MSG_NOSIGNAL);  // one stops halfway through a request
  std::this_thread::sleep_for(100ms);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(status_line_of_a_request(sock), "HTTP/1.1 200 OK") << "request " << i;
}

// A whole request must arrive within the deadline: a byte every 100 ms does
// not hold the connection past it.
TEST_F(FirecrackerHttp, ATricklingRequestIsCutAtTheDeadline) {
  HttpLimits limits;
  limits.request_deadline = 500ms;
  auto server = HttpServer::start(sock, api, limits);
  ASSERT_TRUE(server) << server.error().describe();
  auto c = connect_unix(sock);
  ASSERT_TRUE(c);
  std::atomic<bool> done{false};
  std::thread trickle([&] {
    for (size_t i = 0; i < kGet.size() - 2 && !done; ++i) {  // never the final CRLF
      if (::send(c->get(), &kGet[i], 1, MSG_NOSIGNAL) != 1) return;
      std::this_thread::sleep_for(100ms);
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  std::string got = read_until_closed(c->get(), 10s);
  const auto took = std::chrono::steady_clock::now() - t0;
  done = true;
  trickle.join();
  EXPECT_EQ(got, "");
  EXPECT_GE(took, 400ms);
  EXPECT_LT(took, 2s) << "the trickle kept the connection";
}

// The API socket is made as every snapvm socket (listen_unix): a live
// server's is never taken, a stale one is replaced, nothing else at or
// beside the path is removed, and the socket is 0600 from the start.
TEST_F(FirecrackerHttp, TheSocketOfALiveServerIsKeptAndAStaleOneReplaced) {
  std::ofstream(sock + ".binding") << "someone's file";
  {
    auto stale = listen_unix(sock, 4, 0600, "test");  // closed at once: a stale socket file stays
    ASSERT_TRUE(stale);
  }
  auto first = HttpServer::start(sock, api);
  ASSERT_TRUE(first) << first.error().describe();
  struct stat st {};
  ASSERT_EQ(::stat(sock.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  YesBackend other_backend;
  Api other{"vm-2", other_backend, 19};
  auto second = HttpServer::start(sock, other);
  ASSERT_FALSE(second) << "a second VMM took over a live API socket";
  EXPECT_NE(second.error().describe().find("in use by a running process"), std::string::npos)
      << second.error().describe();
  EXPECT_EQ(status_line_of_a_request(sock), "HTTP/1.1 200 OK") << "the first server still answers";

  std::ifstream binding(sock + ".binding");
  std::string text;
  std::getline(binding, text);
  EXPECT_EQ(text, "someone's file");

  const std::string file = dir.file("notes.txt");
  std::ofstream(file) << "keep me";
  auto refused = HttpServer::start(file, other);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().describe().find("is not a socket"), std::string::npos) << refused.error().describe();
}

}  // namespace
}  // namespace snapvm::firecracker
