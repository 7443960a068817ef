// Control-socket requests as an untrusted client writes them.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "base/unix_socket.h"
#include "control/control_client.h"
#include "control/control_protocol.h"

namespace snapvm {
namespace {

TEST(ControlProtocol, ParsesEveryOp) {
  EXPECT_EQ(parse_control_request(R"({"op":"info"})")->op, ControlRequest::Op::kInfo);
  EXPECT_EQ(parse_control_request(R"({"op":"pause"})")->op, ControlRequest::Op::kPause);
  EXPECT_EQ(parse_control_request(R"({"op":"resume"})")->op, ControlRequest::Op::kResume);
  auto s = parse_control_request(R"({"op":"snapshot","path":"/v/a.snap","diff_from":"/v/b.snap","resume":true})");
  ASSERT_TRUE(s) << s.error().describe();
  EXPECT_EQ(s->op, ControlRequest::Op::kSnapshot);
  EXPECT_EQ(s->path, "/v/a.snap");
  EXPECT_EQ(s->diff_from, "/v/b.snap");
  EXPECT_TRUE(s->resume);
  auto plain = parse_control_request(R"({"op":"snapshot","path":"a.snap"})");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->resume);
  EXPECT_TRUE(plain->diff_from.empty());
}

// Each of these threw a JSON type error in the old server, and the uncaught
// throw ended the VMM with its guest.
TEST(ControlProtocol, WrongTypesAreOneLineErrorsNotThrows) {
  struct Case {
    const char* line;
    const char* says;
  } cases[] = {
      {R"({"op":"snapshot","path":"a","resume":1})", "\"resume\" must be true or false"},
      {R"({"op":"snapshot","path":"a","resume":"yes"})", "\"resume\" must be true or false"},
      {R"({"op":"snapshot","path":"a","resume":null})", "\"resume\" must be true or false"},
      {R"({"op":"snapshot","path":7})", "\"path\" must be a file path"},
      {R"({"op":"snapshot","path":""})", "\"path\" must be a file path"},
      {R"({"op":"snapshot"})", "\"path\" is required"},
      {R"({"op":"snapshot","path":"a","diff_from":[]})", "\"diff_from\" must be a file path"},
      {R"({"op":42})", "expected a JSON object with \"op\""},
      {R"(["op","info"])", "expected a JSON object with \"op\""},
      {R"({"op":"info")", "expected a JSON object with \"op\""},
      {"", "expected a JSON object with \"op\""},
      {R"({"op":"reboot"})", "unknown op 'reboot'"},
  };
  for (const auto& c : cases) {
    auto r = parse_control_request(c.line);
    ASSERT_FALSE(r) << c.line;
    EXPECT_NE(r.error().describe().find(c.says), std::string::npos) << c.line << " -> " << r.error().describe();
  }
}

TEST(ControlProtocol, BoundsLengths) {
  std::string long_path(kMaxControlPathBytes + 1, 'x');
  auto r = parse_control_request(R"({"op":"snapshot","path":")" + long_path + "\"}");
  ASSERT_FALSE(r);
  std::string huge(kMaxControlRequestBytes + 1, ' ');
  EXPECT_FALSE(parse_control_request(huge));
  std::string long_op(60000, 'o');
  auto u = parse_control_request(R"({"op":")" + long_op + "\"}");
  ASSERT_FALSE(u);
  EXPECT_LT(u.error().describe().size(), 200u) << "the error echoes the whole op";
}

// A VMM that takes the request and never answers (hung, or stopped with
// SIGSTOP) costs a client with a timeout that timeout, not forever; one
// that answers late but within it is heard.
TEST(ControlClient, AReplyThatNeverComesEndsAtTheTimeout) {
  const std::string path = ::testing::TempDir() + "control-client-" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  auto listener = listen_unix(path, 4, 0600, "test socket");
  ASSERT_TRUE(listener) << listener.error().describe();
  std::thread server([fd = listener->get()] {
    for (int i = 0; i < 2; ++i) {
      pollfd ready{fd, POLLIN, 0};  // the listener is non-blocking: wait for the client first
      (void)::poll(&ready, 1, 10'000);
      int c = ::accept(fd, nullptr, nullptr);
      if (c < 0) return;
      char buf[256];
      (void)!::recv(c, buf, sizeof buf, 0);
      if (i == 1) {  // the second answers after 100 ms
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        const char reply[] = "{\"ok\":true,\"state\":\"paused\"}\n";
        (void)!::send(c, reply, sizeof reply - 1, MSG_NOSIGNAL);
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // past the client's timeout
      }
      ::close(c);
    }
  });
  auto t0 = std::chrono::steady_clock::now();
  auto silent = control_request(path, {{"op", "info"}}, std::chrono::milliseconds(200));
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(silent);
  EXPECT_NE(silent.error().describe().find("within 200 ms"), std::string::npos) << silent.error().describe();
  EXPECT_LT(ms, 1400) << "the client waited for the server, not for its timeout";
  auto late = control_request(path, {{"op", "info"}}, std::chrono::milliseconds(5000));
  ASSERT_TRUE(late) << late.error().describe();
  EXPECT_EQ(late->value("state", ""), "paused");
  server.join();
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace snapvm
