// Control-socket requests as an untrusted client writes them.
#include <gtest/gtest.h>

#include "api/control_protocol.h"

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

}  // namespace
}  // namespace snapvm
