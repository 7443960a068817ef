// A VMM whose guest RAM file is truncated under it ends with one line and a
// known exit status, not a crash.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/memory_faults.h"
#include "test_util.h"

namespace snapvm {
namespace {

TEST(MemoryFaults, TruncatedGuestRamFileEndsTheVmmWithOneLine) {
  test::TempDir dir;
  std::string ram = dir.file("vm.snap"), log = dir.file("stderr.log");
  test::write_file(ram, std::vector<uint8_t>(1 << 20, 0x5a));
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int err = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(err, 2);
    int fd = ::open(ram.c_str(), O_RDONLY);
    auto* p = static_cast<volatile uint8_t*>(::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
    install_memory_fault_handler();
    register_guest_memory(const_cast<uint8_t*>(p), 1 << 20, ram.c_str());
    if (::truncate(ram.c_str(), 4096) != 0) ::_exit(2);
    (void)p[0x80000];  // past the new end of the file: SIGBUS
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the VMM died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), kExitGuestMemoryLost);
  auto text = test::read_file(log);
  std::string line(text.begin(), text.end());
  EXPECT_EQ(line, "snapvm: guest RAM lost: page at offset 0x0000000000080000 of " + ram +
                      " cannot be read (the file was truncated, or its filesystem is full); the VM stops\n");
}

}  // namespace
}  // namespace snapvm
