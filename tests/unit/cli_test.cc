// The snapvm command as a user runs it: exit codes and one-line errors.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace snapvm {
namespace {

struct Run {
  int exit_code;
  std::string out;  // stdout and stderr together
};

// `prefix` wraps the command (e.g. "timeout 10"), so a hang is a failure, not a stuck suite.
Run run(const std::string& args, const std::string& prefix = "") {
  std::string cmd = prefix + " " + std::string(SNAPVM_BIN_DIR) + "/snapvm " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    test::SampleVm vm(1 << 20, 0.5, 3);
    auto src = vm.source();
    ASSERT_TRUE(write_full(path, vm.contents(), {&src, 1}));
  }
  test::TempDir dir;
  std::string path = dir.file("vm.snap");
};

TEST_F(Cli, VerifyPassesThenNamesTheCorruptPage) {
  auto ok = run("verify " + path);
  EXPECT_EQ(ok.exit_code, 0) << ok.out;
  EXPECT_NE(ok.out.find("OK"), std::string::npos);

  auto bytes = test::read_file(path);
  bytes[0x10000 + 3 * 4096 + 17] ^= 0x04;  // one bit of RAM page 3
  test::write_file(path, bytes);
  auto bad = run("verify " + path);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.out.find("page 0x3 (guest address 0x40003000, file offset 0x13000): checksum mismatch"),
            std::string::npos)
      << bad.out;
}

TEST_F(Cli, InspectJsonIsValidAndComplete) {
  auto r = run("inspect --json " + path);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["format"]["arch"], "arm64");
  EXPECT_EQ(j["machine"]["vcpus"], 2);
  EXPECT_EQ(j["vcpus"].size(), 2u);
  EXPECT_EQ(j["port_forwards"][0]["host_port"], 8080);
  EXPECT_EQ(j["machine"]["memory"][0]["size"], 1 << 20);
}

TEST_F(Cli, BadInputGivesOneClearLine) {
  test::write_file(dir.file("junk"), std::vector<uint8_t>(300, 'x'));
  for (const std::string& arg : {dir.file("junk"), dir.file("missing.snap")}) {
    auto r = run("inspect " + arg);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    EXPECT_EQ(r.out.rfind("snapvm: ", 0), 0u) << r.out;
  }
}

// A FIFO where a snapshot or memory file belongs blocked the open (or the
// first read) until some writer came: every command that reads one refuses
// it at once, in one line, before reading a byte.
TEST_F(Cli, AFifoInPlaceOfASnapshotOrMemoryFileIsRefusedAtOnce) {
  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string state = dir.file("vm.state"), mem = dir.file("vm.mem");
  auto split = run("convert --to firecracker " + path + " " + state + " " + mem);
  ASSERT_EQ(split.exit_code, 0) << split.out;
  for (const std::string& args : {"inspect " + fifo, "inspect --json " + fifo, "verify " + fifo,
                                  "convert --to firecracker " + fifo + " " + dir.file("s") + " " + dir.file("m"),
                                  "convert --to snapvm " + fifo + " " + mem + " " + dir.file("out.snap"),
                                  "convert --to snapvm " + state + " " + fifo + " " + dir.file("out.snap"),
                                  "rebase-mem --base-file " + mem + " --diff-file " + fifo,
                                  "rebase-mem --base-file " + fifo + " --diff-file " + mem}) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = run(args, "timeout -s KILL 10");
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5)) << args;
    EXPECT_EQ(r.exit_code, 1) << args << ": " << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << args << ": " << r.out;
    EXPECT_NE(r.out.find(fifo + ": not a regular file"), std::string::npos) << args << ": " << r.out;
  }
}

// The VMM's command line after `--` reaches the jail whole: none of its
// options is read as one of the jailer's (CLI11 did, after a repeated option).
TEST_F(Cli, JailPassesEverythingAfterTheDoubleDashToTheVmm) {
  auto r = run("jail --id t --uid 1000 --gid 1000 --root " + dir.file("jails") +
               " --file /etc/hosts --file /etc/hosts:/h -- restore /vm.snap --vsock /r.vsock --console /dev/null --no-sync");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out.find("not expected"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.rfind("snapvm: jail: ", 0), 0u) << r.out;
  auto missing = run("jail --id t --uid 1000 --gid 1000 --file /etc/hosts");
  EXPECT_NE(missing.out.find("after --"), std::string::npos) << missing.out;
}

}  // namespace
}  // namespace snapvm
