// The snapvm command as a user runs it: exit codes and one-line errors.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/units.h"
#include "base/unix_socket.h"
#include "snapshot/reader.h"
#include "test_util.h"

namespace snapvm {
namespace {

struct Run {
  int exit_code;
  std::string out;  // stdout and stderr together (stdout alone with Stream::kStdout)
};

enum class Stream { kBoth, kStdout, kStderr };

// `prefix` wraps the command (e.g. "timeout 10"), so a hang is a failure, not a stuck suite.
Run run(const std::string& args, const std::string& prefix = "", Stream stream = Stream::kBoth) {
  const char* redirect = stream == Stream::kBoth ? " 2>&1" : stream == Stream::kStdout ? " 2>/dev/null" : " 2>&1 >/dev/null";
  std::string cmd = prefix + " " + std::string(SNAPVM_BIN_DIR) + "/snapvm " + args + redirect;
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

size_t lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }
bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Whether this build has `snapvm COMMAND` (run and bake need a VMM for the
// host's architecture, image the image support).
bool built_with(const std::string& command) { return run("help " + command).exit_code == 0; }

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

TEST(Units, SizesTakeTheirSuffixInAnyCase) {
  const std::pair<const char*, uint64_t> good[] = {
      {"4096", 4096},         {"0", 0},          {"64K", 64 << 10},      {"64k", 64 << 10},   {"64KiB", 64 << 10},
      {"64kib", 64 << 10},    {"64KB", 64 << 10}, {"64kb", 64 << 10},    {"512M", 512 << 20}, {"512m", 512 << 20},
      {"512MiB", 512 << 20},  {"512mib", 512 << 20}, {"512MIB", 512 << 20}, {"512Mb", 512 << 20}, {"1G", 1ull << 30},
      {"1g", 1ull << 30},     {"1GiB", 1ull << 30}, {"1gib", 1ull << 30}, {"2T", 2ull << 40}, {"2tib", 2ull << 40}};
  for (const auto& [text, bytes] : good) {
    auto r = parse_size(text);
    ASSERT_TRUE(r) << text << ": " << r.error().describe();
    EXPECT_EQ(*r, bytes) << text;
  }
  for (const char* bad : {"", "M", "-1", "1.5G", "512X", "512Mi", "512MiBs", "512 M", "1Gb2", "0x10",
                          "16777216T", "99999999999999999999"}) {
    EXPECT_FALSE(parse_size(bad)) << bad;
  }
}

TEST(Units, AFlagsSizeErrorNamesTheFlagAndTheText) {
  auto suffix = parse_size_flag("--mem", "512X");
  ASSERT_FALSE(suffix);
  EXPECT_EQ(suffix.error().describe().rfind("--mem 512X: unknown size suffix 'X'", 0), 0u) << suffix.error().describe();
  auto multiple = parse_size_flag("--mem", "1000K", 2 << 20);
  ASSERT_FALSE(multiple);
  EXPECT_EQ(multiple.error().describe(), "--mem 1000K: not a positive multiple of 2 MiB");
  EXPECT_FALSE(parse_size_flag("--mem", "0", 2 << 20));
  EXPECT_EQ(*parse_size_flag("--mem", "512mib", 2 << 20), 512u << 20);
  auto big = parse_size_flag("--max-size", "99999999999999999999");
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().describe(), "--max-size 99999999999999999999: too large");
}

// `snapvm help` is the usage (stdout, 0); `snapvm` alone is a usage error
// (the usage on stderr, 2), as git does; both list every exit status.
TEST(CliUsage, HelpPrintsTheUsageAndEveryExitStatus) {
  auto help = run("help", "", Stream::kStdout);
  EXPECT_EQ(help.exit_code, 0) << help.out;
  for (const char* part : {"Usage:", "inspect", "verify", "Exit status:", "  0 ", "  1 ", "  2 ", "125", "159",
                           "run --image: the program's status"}) {
    EXPECT_TRUE(has(help.out, part)) << part << " in:\n" << help.out;
  }
  auto bare = run("", "", Stream::kStderr);
  EXPECT_EQ(bare.exit_code, 2);
  EXPECT_TRUE(has(bare.out, "Usage:")) << bare.out;
  EXPECT_EQ(run("", "", Stream::kStdout).out, "");
  auto long_help = run("--help", "", Stream::kStdout);
  EXPECT_EQ(long_help.exit_code, 0);
  EXPECT_TRUE(has(long_help.out, "Exit status:")) << long_help.out;
  auto verify_help = run("help verify", "", Stream::kStdout);
  EXPECT_EQ(verify_help.exit_code, 0);
  EXPECT_TRUE(has(verify_help.out, "--quiet")) << verify_help.out;
  auto jail = run("jail --help", "", Stream::kStdout);
  EXPECT_TRUE(has(jail.out, "-- run|restore|firecracker")) << jail.out;
}

TEST(CliUsage, AnUnknownCommandNamesItselfAndTheClosestOne) {
  const std::pair<const char*, const char*> cases[] = {
      {"inspekt x.snap", "snapvm: unknown command 'inspekt'; did you mean 'inspect'?\n"},
      {"verfy x.snap", "snapvm: unknown command 'verfy'; did you mean 'verify'?\n"},
      {"help inspekt", "snapvm: unknown command 'inspekt'; did you mean 'inspect'?\n"},
      {"lgos web", "snapvm: unknown command 'lgos'; did you mean 'logs'?\n"},
      {"pool stauts --socket /x", "snapvm: pool: unknown command 'stauts'; did you mean 'status'?\n"},
  };
  for (const auto& [args, line] : cases) {
    auto r = run(args);
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.out;
    EXPECT_EQ(r.out, line) << args;
  }
  auto pool = run("pool");
  EXPECT_EQ(pool.exit_code, 2) << pool.out;
  EXPECT_EQ(pool.out, "snapvm: pool: a command is required (serve, take, release, status, stop)\n");
}

TEST_F(Cli, UnknownFlagsAndBadArgumentsAreUsageErrorsOnOneLine) {
  auto flag = run("verify --qiet " + path);
  EXPECT_EQ(flag.exit_code, 2);
  EXPECT_EQ(flag.out, "snapvm: verify: unknown flag '--qiet'; did you mean '--quiet'?\n");
  auto eq = run("inspect --jsn=1 " + path);
  EXPECT_EQ(eq.exit_code, 2);
  EXPECT_EQ(eq.out, "snapvm: inspect: unknown flag '--jsn'; did you mean '--json'?\n");
  auto nested = run("pool status --socket /x --jsn");
  EXPECT_EQ(nested.exit_code, 2);
  EXPECT_EQ(nested.out, "snapvm: pool status: unknown flag '--jsn'; did you mean '--json'?\n");
  auto top = run("--verison");
  EXPECT_EQ(top.exit_code, 2);
  EXPECT_EQ(top.out, "snapvm: unknown flag '--verison'; did you mean '--version'?\n");
  // Every other parse error of CLI11 (104-114 before): 2, one line.
  for (const std::string& args : std::vector<std::string>{"inspect", "verify " + path + " extra",
                                                         "convert --to qcow2 a b c", "convert --to snapvm a b", "exec"}) {
    auto r = run(args);
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.out;
    EXPECT_EQ(lines(r.out), 1u) << args << ": " << r.out;
    EXPECT_EQ(r.out.rfind("snapvm: ", 0), 0u) << args << ": " << r.out;
  }
  // -i is exec's --interactive only: run and bake spell --initrd out.
  if (built_with("run")) {
    auto i = run("run -i initrd.cpio --kernel Image");
    EXPECT_EQ(i.exit_code, 2) << i.out;
    EXPECT_TRUE(has(i.out, "unknown flag '-i'")) << i.out;
    EXPECT_TRUE(has(run("help bake").out, "  --initrd")) ;
    EXPECT_FALSE(has(run("help bake").out, "-i,")) ;
  }
  EXPECT_TRUE(has(run("help exec").out, "-i,--interactive"));
}

// Every size flag: one parser, its name and the text in the error, exit 2.
TEST_F(Cli, EverySizeFlagNamesItselfInItsError) {
  std::vector<std::pair<std::string, std::string>> cases = {
      {"cp vm:/etc/hosts " + dir.file("h") + " --max-size 1Q", "snapvm: --max-size 1Q: unknown size suffix 'Q'"},
      {"jail --id t --uid 1000 --gid 1000 --root " + dir.file("j") + " --memory 1gibs -- run",
       "snapvm: --memory 1gibs: unknown size suffix 'gibs'"},
      {"pool serve " + path + " --socket " + dir.file("p.sock") + " --seccomp off --max-memory lots",
       "snapvm: --max-memory lots: not a size"},
  };
  if (built_with("run")) {
    cases.push_back({"run --seccomp off --kernel " + dir.file("k") + " --mem 1000K",
                     "snapvm: --mem 1000K: not a positive multiple of 2 MiB"});
    cases.push_back({"run --seccomp off --kernel " + dir.file("k") + " -m 512X",
                     "snapvm: --mem 512X: unknown size suffix 'X'"});
    cases.push_back({"bake img out.snap --seccomp off --kernel k --initrd i --mem 3M",
                     "snapvm: --mem 3M: not a positive multiple of 2 MiB"});
  }
  if (built_with("image")) {
    cases.push_back({"image import " + dir.file("src") + " n --store " + dir.file("store") + " --max-size 8Gib7",
                     "snapvm: --max-size 8Gib7: unknown size suffix 'Gib7'"});
  }
  for (const auto& [args, start] : cases) {
    auto r = run(args, "timeout -s KILL 20");
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.out;
    EXPECT_EQ(lines(r.out), 1u) << args << ": " << r.out;
    EXPECT_EQ(r.out.rfind(start, 0), 0u) << args << ": " << r.out;
  }
  if (built_with("run")) {
    // Any case is a size: the run gets past --mem to the missing kernel.
    auto lower = run("run --seccomp off --kernel " + dir.file("k") + " --mem 512mib", "timeout -s KILL 20");
    EXPECT_EQ(lower.exit_code, 1) << lower.out;
    EXPECT_FALSE(has(lower.out, "--mem")) << lower.out;
    EXPECT_TRUE(has(lower.out, dir.file("k"))) << lower.out;
  }
}

TEST_F(Cli, MissingFilesAndVmsAreOneLineAndExitOne) {
  const std::string missing = dir.file("missing.snap");
  for (const std::string& args : std::vector<std::string>{"verify " + missing, "inspect " + missing, "info nosuchvm",
                                                         "info " + dir.file("nosuch.sock"), "pause nosuchvm",
                                                         "snapshot nosuchvm " + dir.file("x.snap")}) {
    auto r = run(args);
    EXPECT_EQ(r.exit_code, 1) << args << ": " << r.out;
    EXPECT_EQ(lines(r.out), 1u) << args << ": " << r.out;
    EXPECT_EQ(r.out.rfind("snapvm: ", 0), 0u) << args << ": " << r.out;
  }
  auto vm = run("info nosuchvm");
  EXPECT_TRUE(has(vm.out, "nosuchvm.sock (is the VM running?)")) << vm.out;
  // A pool's socket is no VM's control socket.
  auto pool = run("pool status --socket " + dir.file("nosuch.pool"));
  EXPECT_EQ(pool.exit_code, 1) << pool.out;
  EXPECT_EQ(lines(pool.out), 1u) << pool.out;
  EXPECT_TRUE(has(pool.out, "snapvm: pool: connect to the pool socket " + dir.file("nosuch.pool") +
                                " (is the pool running?)"))
      << pool.out;
  EXPECT_FALSE(has(pool.out, "VM")) << pool.out;
  if (built_with("bake")) {
    // The snapshot's directory is named, not the socket the bake puts beside it.
    auto bake = run("bake img " + dir.file("no/such/dir/web.snap") + " --seccomp off --kernel k --initrd i");
    EXPECT_EQ(bake.exit_code, 1) << bake.out;
    EXPECT_EQ(bake.out, "snapvm: bake: OUT " + dir.file("no/such/dir/web.snap") + ": directory " +
                            dir.file("no/such/dir") + " does not exist\n");
  }
}

// A checksum error inside the file names the file once (it was
// "FILE: FILE: checksum table of RAM region 0 ...").
TEST_F(Cli, AVerifyErrorNamesTheFileOnce) {
  uint64_t table = 0;
  {
    auto file = SnapshotFile::open(path);
    ASSERT_TRUE(file) << file.error().describe();
    table = file->ram_regions().at(0).table_offset;
  }
  auto bytes = test::read_file(path);
  ASSERT_LT(table, bytes.size());
  bytes[table] ^= 0x40;
  test::write_file(path, bytes);
  for (const std::string args : {"verify ", "verify -q "}) {
    auto r = run(args + path);
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_EQ(lines(r.out), 1u) << r.out;
    EXPECT_TRUE(has(r.out, "checksum table")) << r.out;
    EXPECT_EQ(r.out.rfind("snapvm: " + path + ": ", 0), 0u) << r.out;
    EXPECT_EQ(r.out.find(path), r.out.rfind(path)) << "the file named twice: " << r.out;
  }
}

// --json: the report, or the error, as JSON on stdout; human text otherwise.
TEST_F(Cli, JsonOutputsParseAsJson) {
  auto ok = run("verify --json " + path, "", Stream::kStdout);
  ASSERT_EQ(ok.exit_code, 0) << ok.out;
  auto j = nlohmann::json::parse(ok.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["file"], path);
  EXPECT_GT(j["pages_checked"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["bad_page_count"], 0);

  auto bytes = test::read_file(path);
  bytes[0x10000 + 3 * 4096 + 17] ^= 0x04;
  test::write_file(path, bytes);
  auto bad = run("verify --json " + path, "", Stream::kStdout);
  EXPECT_EQ(bad.exit_code, 1);
  auto b = nlohmann::json::parse(bad.out);
  EXPECT_EQ(b["ok"], false);
  EXPECT_EQ(b["bad_page_count"], 1);
  EXPECT_EQ(b["bad_pages"][0]["page"], 3);
  EXPECT_TRUE(b["error"].is_string());

  // Errors, usage errors included: one JSON object on stdout, nothing on stderr.
  const std::pair<std::string, int> errors[] = {{"verify --json " + dir.file("missing.snap"), 1},
                                                {"inspect --json " + dir.file("missing.snap"), 1},
                                                {"info --json nosuchvm", 1},
                                                {"pool status --json --socket " + dir.file("p.sock"), 1},
                                                {"pool take --json --socket " + dir.file("p.sock"), 1},
                                                {"verify --json --bogus " + path, 2}};
  for (const auto& [args, code] : errors) {
    auto out = run(args, "", Stream::kStdout);
    EXPECT_EQ(out.exit_code, code) << args << ": " << out.out;
    auto e = nlohmann::json::parse(out.out, nullptr, false);
    ASSERT_TRUE(e.is_object()) << args << ": " << out.out;
    EXPECT_TRUE(e["error"].is_string()) << args << ": " << out.out;
    EXPECT_EQ(e["exit_code"], code) << args;
    EXPECT_EQ(run(args, "", Stream::kStderr).out, "") << args;
  }
  if (built_with("image")) {
    auto none = run("image list --json --store " + dir.file("store"), "", Stream::kStdout);
    EXPECT_EQ(none.exit_code, 0) << none.out;
    auto list = nlohmann::json::parse(none.out, nullptr, false);
    EXPECT_TRUE(list.is_array()) << none.out;
  }
}


// A guest folder as `snapvm guest build` leaves it: the files, their
// sha256sum lines and the manifest.
void make_guest_dir(const test::TempDir& dir) {
  std::string cmd = "cd " + dir.path() + " && head -c 100000 /dev/urandom > kernel && head -c 50000 /dev/urandom > "
                    "initrd.cpio && sha256sum kernel initrd.cpio > SHA256SUMS && printf "
                    "'kernel_package=linux-image-test\\nkernel_version=1\\nbuilt=now\\n' > manifest";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
}

TEST(CliGuest, TheBuiltGuestIsShownAndCheckedBeforeRunBootsIt) {
  if (!built_with("guest")) GTEST_SKIP() << "this build has no `snapvm guest`";
  test::TempDir guest;
  make_guest_dir(guest);
  auto shown = run("guest show --json --dir " + guest.path(), "", Stream::kStdout);
  ASSERT_EQ(shown.exit_code, 0) << shown.out;
  auto j = nlohmann::json::parse(shown.out);
  EXPECT_EQ(j["kernel"], guest.file("kernel"));
  EXPECT_EQ(j["initrd"], guest.file("initrd.cpio"));
  EXPECT_EQ(j["kernel_package"], "linux-image-test");
  EXPECT_TRUE(j["verified"].get<bool>());

  // One changed byte in the kernel: run without --kernel refuses to boot it.
  ASSERT_EQ(std::system(("printf x | dd of=" + guest.file("kernel") + " bs=1 seek=500 conv=notrunc 2>/dev/null").c_str()), 0);
  auto changed = run("run --mem 64M", "SNAPVM_GUEST_DIR=" + guest.path());
  EXPECT_EQ(changed.exit_code, 1) << changed.out;
  EXPECT_EQ(lines(changed.out), 1u) << changed.out;
  EXPECT_TRUE(has(changed.out, guest.file("kernel") + " does not match the SHA-256")) << changed.out;
  EXPECT_EQ(run("guest show --dir " + guest.path()).exit_code, 1);
}

TEST(CliGuest, WithoutABuiltGuestRunAndBakeSayWhatToDo) {
  if (!built_with("guest")) GTEST_SKIP() << "this build has no `snapvm guest`";
  test::TempDir empty;
  for (const std::string cmd : {"run --mem 64M", "bake someimage out.snap"}) {
    auto r = run(cmd, "SNAPVM_GUEST_DIR=" + empty.path() + "/none");
    EXPECT_EQ(r.exit_code, 1) << cmd << ": " << r.out;
    EXPECT_EQ(lines(r.out), 1u) << r.out;
    EXPECT_TRUE(has(r.out, "run `snapvm guest build` (or give --kernel and --initrd)")) << r.out;
  }
}


TEST(CliLifecycle, AVmThatIsNotRunningOrABadNameIsOneLine) {
  const std::pair<const char*, int> cases[] = {
      {"stop no-such-vm-here", 1}, {"kill no-such-vm-here", 1},   {"logs no-such-vm-here", 1},
      {"stop ../etc", 1},          {"kill -s NOPE some-vm", 2},    {"ps --bogus", 2},
  };
  for (const auto& [args, code] : cases) {
    auto r = run(args);
    EXPECT_EQ(r.exit_code, code) << args << ": " << r.out;
    EXPECT_EQ(lines(r.out), 1u) << args << ": " << r.out;
  }
  EXPECT_TRUE(has(run("stop no-such-vm-here").out, "no VM named no-such-vm-here is running"));
  EXPECT_TRUE(has(run("stop ../etc").out, "'../etc' is no VM name"));
  auto ps = run("ps --json", "", Stream::kStdout);
  EXPECT_EQ(ps.exit_code, 0);
  EXPECT_TRUE(nlohmann::json::parse(ps.out, nullptr, false).is_array()) << ps.out;
}

TEST(CliLifecycle, DetachNeedsANameAndNamesMustBeFileNames) {
  if (!built_with("run")) GTEST_SKIP() << "this build has no VMM";
  auto no_name = run("run -d --kernel /nonexistent");
  EXPECT_EQ(no_name.exit_code, 2) << no_name.out;
  EXPECT_TRUE(has(no_name.out, "-d needs --name")) << no_name.out;
  auto with_api = run("run -d --name x --api /tmp/x.sock --kernel /nonexistent");
  EXPECT_EQ(with_api.exit_code, 2) << with_api.out;
  EXPECT_TRUE(has(with_api.out, "leave out --api")) << with_api.out;
  for (const char* bad : {"../x", ".hidden", "a/b", ""}) {
    auto r = run(std::string("run --kernel /nonexistent --name '") + bad + "'");
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.out;
    EXPECT_EQ(lines(r.out), 1u) << r.out;
  }
}


// A vsock socket whose guest never answers CONNECT (a guest still booting,
// or one without snapvm's agent): exec names it after -t, not later.
TEST(CliExec, AGuestThatNeverAnswersIsNamedAfterTheTimeout) {
  test::TempDir dir;
  const std::string vsock = dir.file("silent.vsock");
  auto listener = listen_unix(vsock, 4, 0600, "test vsock");
  ASSERT_TRUE(listener) << listener.error().describe();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run("exec " + vsock + " -t 1 -- true", "timeout 30");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 125) << r.out;
  EXPECT_EQ(lines(r.out), 1u) << r.out;
  EXPECT_TRUE(has(r.out, "within 1 s: the guest is not up yet, or runs no snapvm agent")) << r.out;
  EXPECT_LT(s, 5.0) << r.out;
}


// The same commands as a user who is not root: each says in one line what
// it cannot reach, and why.
TEST(CliNonRoot, WhatAnotherUserCannotReachIsNamedInOneLine) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to drop to nobody";
  const std::string as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";
  if (run("--version", as_nobody).exit_code != 0) GTEST_SKIP() << "nobody cannot run " << SNAPVM_BIN_DIR << "/snapvm";
  // A root VM's control socket (0600), as run --name makes it.
  const std::string name = "cli-nonroot-test";
  ::mkdir("/run/snapvm", 0755);
  const std::string socket = "/run/snapvm/" + name + ".sock";
  ::unlink(socket.c_str());
  auto listener = listen_unix(socket, 4, 0600, "control socket");
  ASSERT_TRUE(listener) << listener.error().describe();
  auto stop = run("stop " + name, as_nobody);
  EXPECT_EQ(stop.exit_code, 1) << stop.out;
  EXPECT_EQ(lines(stop.out), 1u) << stop.out;
  EXPECT_TRUE(has(stop.out, "VM " + name + " does not answer") && has(stop.out, "Permission denied")) << stop.out;
  auto ps = run("ps", as_nobody, Stream::kStderr);
  EXPECT_EQ(ps.exit_code, 0) << ps.out;
  EXPECT_TRUE(has(ps.out, "did not answer (another user's, or busy): not listed")) << ps.out;
  ::unlink(socket.c_str());

  // Sanitizer trees build no guest init (it is static): nothing to run there.
  if (built_with("guest") && ::access((std::string(SNAPVM_BIN_DIR) + "/snapvm-guest-init").c_str(), X_OK) == 0) {
    auto guest = run("guest build --dir /root/snapvm-guest-test", as_nobody);
    EXPECT_EQ(guest.exit_code, 1) << guest.out;
    EXPECT_EQ(lines(guest.out), 1u) << guest.out;
    EXPECT_TRUE(has(guest.out, "cannot write in /root: run as root, or choose a folder of yours")) << guest.out;
  }
}


// One VM per name: the name's lock, held by a running VM, refuses a second
// one before it takes anything (its log, its sockets).
TEST(CliLifecycle, ANameInUseIsRefusedBeforeAnythingIsTaken) {
  if (!built_with("run") || ::geteuid() != 0) GTEST_SKIP() << "needs a VMM build and root (/run/snapvm)";
  const std::string name = "cli-lock-test";
  ::mkdir("/run/snapvm", 0755);
  const std::string lock = "/run/snapvm/" + name + ".lock", log = "/run/snapvm/" + name + ".log";
  int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  { std::FILE* f = std::fopen(log.c_str(), "w"); ASSERT_NE(f, nullptr); std::fputs("the running VM's log\n", f); std::fclose(f); }
  for (const char* how : {"run --name ", "run -d --name "}) {
    auto r = run(std::string(how) + name + " --kernel /nonexistent");
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_TRUE(has(r.out, "a VM named " + name + " is running already, or starting")) << r.out;
  }
  EXPECT_EQ(test::read_file(log).size(), std::string("the running VM's log\n").size()) << "the log was emptied";
  ::close(fd);
  ::unlink(log.c_str());
}

}  // namespace
}  // namespace snapvm
