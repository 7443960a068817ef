// The pieces that run an image's program, tested without a VM: the host's
// reading of the guest console, and the guest agent's resolution of the
// image's user in the image's own /etc/passwd and /etc/group.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "image/program_console.h"
#include "process_spec.h"

namespace snapvm {
namespace {

namespace fs = std::filesystem;

TEST(ImageConsole, PassesTheProgramsLinesDropsInitsAndKeepsTheExitStatus) {
  std::string shown;
  image::ImageConsole console([&](std::string_view s) { shown.append(s); });
  auto sink = console.sink();
  sink("snapvm-init: image root from /dev/vda\r\nSNAPVM-GUEST-READY cpus=1\r\nhel");
  EXPECT_EQ(shown, "");  // half a line waits for its end
  sink("lo\r\nworld\r\n");
  EXPECT_EQ(shown, "hello\r\nworld\r\n");
  EXPECT_FALSE(console.exit_status());
  sink("SNAPVM-APP-EXIT code=7\r\n[   35.068908] reboot: Power down\r\n");
  EXPECT_EQ(console.exit_status(), 7);
  EXPECT_EQ(shown, "hello\r\nworld\r\n");
  sink("SNAPVM-APP-EXIT signal=9\n");
  EXPECT_EQ(console.exit_status(), 137);
  // A program that never ends a line is still shown, in pieces.
  sink(std::string(5000, 'x'));
  EXPECT_EQ(shown.size(), 14u + 5000u);
}

class ProcessSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("snapvm-spec-" + std::to_string(::getpid()));
    fs::create_directories(root_ / "etc");
    std::ofstream(root_ / "etc/passwd") << "root:x:0:0:root:/root:/bin/sh\n"
                                           "app:x:1000:1001:app:/home/app:/bin/sh\n"
                                           "broken:x:notanumber:1:::\n";
    std::ofstream(root_ / "etc/group") << "root:x:0:\napp:x:1001:\nstaff:x:50:app,other\nwheel:x:10:other\n";
  }
  void TearDown() override { fs::remove_all(root_); }
  guest::ProcessSpec resolve(const std::string& user, bool expect_ok = true) {
    std::string error;
    auto spec = guest::parse_process_spec(
        nlohmann::json{{"argv", {"/bin/true"}}, {"root", root_.string()}, {"user", user}, {"env", {{"A", "1"}}}},
        error);
    EXPECT_TRUE(spec) << error;
    EXPECT_EQ(guest::resolve_user(*spec, error), expect_ok) << error;
    error_ = error;
    return *spec;
  }
  fs::path root_;
  std::string error_;
};

TEST_F(ProcessSpecTest, NamesAndNumbersResolveInTheImagesDatabases) {
  auto s = resolve("app");
  EXPECT_EQ(s.uid, 1000u);
  EXPECT_EQ(s.gid, 1001u);
  EXPECT_EQ(s.groups, (std::vector<gid_t>{1001, 50}));  // its group, then the groups naming it
  EXPECT_NE(std::find(s.env.begin(), s.env.end(), "HOME=/home/app"), s.env.end());
  EXPECT_NE(std::find(s.env.begin(), s.env.end(), "A=1"), s.env.end());
  s = resolve("1000:staff");
  EXPECT_EQ(s.uid, 1000u);
  EXPECT_EQ(s.gid, 50u);
  s = resolve("4242:4343");  // numbers need no entry
  EXPECT_EQ(s.uid, 4242u);
  EXPECT_EQ(s.gid, 4343u);
  s = resolve("");
  EXPECT_EQ(s.uid, 0u);
  EXPECT_NE(std::find(s.env.begin(), s.env.end(), "HOME=/root"), s.env.end());
}

TEST_F(ProcessSpecTest, UnknownNamesAndBadRequestsAreRefusedWithOneLine) {
  resolve("nobody", false);
  EXPECT_EQ(error_, "user `nobody` is not in the image's /etc/passwd");
  resolve("broken", false);  // an entry with a non-numeric uid is no entry
  resolve("app:nogroup", false);
  EXPECT_EQ(error_, "group `nogroup` is not in the image's /etc/group");
  std::string error;
  EXPECT_FALSE(guest::parse_process_spec(nlohmann::json{{"argv", nlohmann::json::array()}}, error));
  EXPECT_FALSE(guest::parse_process_spec(nlohmann::json{{"argv", {1, 2}}}, error));
  EXPECT_EQ(error, "argv must be strings");
}

}  // namespace
}  // namespace snapvm
