// How `snapvm firecracker` opens the paths API clients name: never blocking
// on a FIFO, never writing through a link (firecracker/api_paths.h).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <string>

#include "firecracker/api_paths.h"

namespace snapvm::firecracker {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class ApiPaths : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("snapvm-api-paths-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string at(const std::string& name) const { return (dir_ / name).string(); }
  static std::string read(const std::string& path) {
    std::string text;
    int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK);
    char buf[256];
    for (ssize_t n; fd >= 0 && (n = ::read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
    if (fd >= 0) ::close(fd);
    return text;
  }
  static void write_file(const std::string& path, const std::string& text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
  }

  fs::path dir_;
};

TEST_F(ApiPaths, AFifoNamedAsAKernelOrADriveIsRefusedWithoutBlocking) {
  const std::string fifo = at("kernel");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (bool writable : {false, true}) {
    // A plain open() of a FIFO waits for the other end: run it aside, and
    // if it hangs, give it a writer so the test ends either way.
    auto opened = std::async(std::launch::async, [&] {
      return open_api_input(fifo, writable ? ApiInput::kDrive : ApiInput::kFile, writable, "kernel_image_path");
    });
    if (opened.wait_for(5s) != std::future_status::ready) {
      int unblock = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK);
      ADD_FAILURE() << "opening a FIFO blocked";
      opened.wait();
      ::close(unblock);
      continue;
    }
    auto r = opened.get();
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().describe().find("is a FIFO"), std::string::npos) << r.error().describe();
  }
}

TEST_F(ApiPaths, InputsAreRegularFilesOrForDrivesBlockDevicesAndMayBeLinks) {
  write_file(at("vmlinux"), "kernel");
  ASSERT_EQ(::symlink(at("vmlinux").c_str(), at("vmlinuz").c_str()), 0);  // as /vmlinuz is on Debian
  auto linked = open_api_input(at("vmlinuz"), ApiInput::kFile, false, "kernel_image_path");
  ASSERT_TRUE(linked) << linked.error().describe();
  EXPECT_EQ(::fcntl(linked->get(), F_GETFL) & O_NONBLOCK, 0) << "the descriptor handed on should block as usual";

  auto device = open_api_input("/dev/null", ApiInput::kDrive, false, "path_on_host");
  ASSERT_FALSE(device);
  EXPECT_NE(device.error().describe().find("character device"), std::string::npos) << device.error().describe();
  auto directory = open_api_input(dir_.string(), ApiInput::kFile, false, "initrd_path");
  ASSERT_FALSE(directory);
  EXPECT_NE(directory.error().describe().find("initrd_path"), std::string::npos) << directory.error().describe();
}

TEST_F(ApiPaths, ALogSinkThatIsALinkIsRefusedAndItsTargetUntouched) {
  write_file(at("secret"), "keep me\n");
  ASSERT_EQ(::symlink(at("secret").c_str(), at("fc.log").c_str()), 0);
  auto r = open_api_sink(at("fc.log"), "path");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().describe().find("symbolic link"), std::string::npos) << r.error().describe();
  EXPECT_EQ(read(at("secret")), "keep me\n");
}

TEST_F(ApiPaths, NoFileIsCreatedThroughADanglingLink) {
  ASSERT_EQ(::symlink(at("planted-target").c_str(), at("metrics.json").c_str()), 0);
  auto r = open_api_sink(at("metrics.json"), "path");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().describe().find("symbolic link"), std::string::npos) << r.error().describe();
  EXPECT_FALSE(fs::exists(at("planted-target")));
}

TEST_F(ApiPaths, AMissingSinkIsCreatedForItsOwnerOnlyAndAppendedTo) {
  write_file(at("old.log"), "line 1\n");
  auto existing = open_api_sink(at("old.log"), "path");
  ASSERT_TRUE(existing) << existing.error().describe();
  ASSERT_EQ(::write(existing->get(), "line 2\n", 7), 7);
  EXPECT_EQ(read(at("old.log")), "line 1\nline 2\n");

  auto fresh = open_api_sink(at("new.log"), "path");
  ASSERT_TRUE(fresh) << fresh.error().describe();
  struct stat st {};
  ASSERT_EQ(::stat(at("new.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ApiPaths, ALogFifoWithNoReaderIsTakenAndNeverBlocksTheWriter) {
  const std::string fifo = at("logger.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto opened = std::async(std::launch::async, [&] { return open_api_sink(fifo, "path"); });
  ASSERT_EQ(opened.wait_for(5s), std::future_status::ready) << "opening a FIFO with no reader blocked";
  auto sink = opened.get();
  ASSERT_TRUE(sink) << sink.error().describe();
  // Past the pipe's capacity with nobody reading: writes fail (EAGAIN)
  // instead of waiting.
  std::string line(4096, 'x');
  ssize_t n = 0;
  for (int i = 0; i < 1024 && n >= 0; ++i) n = ::write(sink->get(), line.data(), line.size());
  EXPECT_LT(n, 0);
  EXPECT_EQ(errno, EAGAIN);
  // A reader that comes later gets what fitted.
  EXPECT_EQ(read(fifo).substr(0, 8), "xxxxxxxx");
}

}  // namespace
}  // namespace snapvm::firecracker
