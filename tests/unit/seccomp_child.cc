// A fresh process for the seccomp tests that glibc's process-wide state
// would spoil in a forked test: malloc reads /proc/sys/vm/overcommit_memory
// once per process (the first time a thread's arena shrinks) and keeps the
// answer, so a child forked from the test binary, whose other tests already
// shrank arenas, would never show the read that ended filtered VMMs.
//
//   snapvm-test-seccomp-child churn      threads under the device filter
//                                        allocate and free arena-sized blocks
//   snapvm-test-seccomp-child report     a device thread makes a forbidden
//                                        call: the reporter's call stack
//
// Exit status: 0 when the scenario ran through; the sandbox's own status
// (159) or a signal when a filter stopped it.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "sandbox/seccomp.h"

namespace {

using snapvm::sandbox::ThreadKind;

void enter_or_fail(ThreadKind kind) {
  if (auto s = snapvm::sandbox::enter(kind); !s) {
    std::fprintf(stderr, "seccomp-child: %s\n", s.error().describe().c_str());
    ::_exit(2);
  }
}

// Blocks under the mmap threshold (128 KiB) come from the thread's arena;
// freeing many of them leaves a top chunk over the trim threshold, so the
// arena's heap shrinks: glibc's check_may_shrink_heap, which opens
// /proc/sys/vm/overcommit_memory on its first call.
void churn_allocations() {
  constexpr size_t kBlock = 100 << 10;
  for (int round = 0; round < 40; ++round) {
    std::vector<char*> blocks;
    for (int i = 0; i < 32; ++i) {
      auto* b = new char[kBlock];
      std::memset(b, round, kBlock);  // touched, as a device's buffers are
      blocks.push_back(b);
    }
    while (!blocks.empty()) {
      delete[] blocks.back();
      blocks.pop_back();
    }
  }
}

int churn() {
  // Device threads start and end with a VM's devices: several at once, each
  // a thread glibc would give an arena of its own, each churning until it
  // exits (a thread's exit frees its cached blocks too).
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([] {
      enter_or_fail(ThreadKind::kDevice);
      churn_allocations();
    });
  }
  for (auto& t : threads) t.join();
  return 0;
}

int report() {
  std::thread device([] {
    enter_or_fail(ThreadKind::kDevice);
    (void)::socketpair(AF_UNIX, SOCK_STREAM, 0, nullptr);  // not a device thread's call
  });
  device.join();
  return 0;  // not reached: the reporter ends the process
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: snapvm-test-seccomp-child churn|report\n");
    return 2;
  }
  if (auto s = snapvm::sandbox::enable(snapvm::sandbox::Mode::kEnforce); !s) {
    std::fprintf(stderr, "seccomp-child: %s\n", s.error().describe().c_str());
    return 2;
  }
  std::string scenario = argv[1];
  if (scenario == "churn") return churn();
  if (scenario == "report") return report();
  std::fprintf(stderr, "seccomp-child: unknown scenario %s\n", argv[1]);
  return 2;
}
