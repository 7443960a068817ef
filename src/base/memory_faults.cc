#include "base/memory_faults.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>

namespace snapvm {
namespace {

struct Range {
  std::atomic<uintptr_t> start{0};
  std::atomic<size_t> size{0};
  char backing[192] = {};
};
Range g_ranges[8];

void put(const char* s) { (void)!::write(2, s, std::strlen(s)); }

void put_hex(uintptr_t v) {
  char buf[2 + 16 + 1];
  buf[0] = '0';
  buf[1] = 'x';
  for (int i = 0; i < 16; ++i) buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
  buf[18] = '\0';
  put(buf);
}

void on_sigbus(int sig, siginfo_t* info, void*) {
  auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (auto& r : g_ranges) {
    uintptr_t start = r.start.load(std::memory_order_acquire);
    size_t size = r.size.load(std::memory_order_acquire);
    if (size == 0 || addr < start || addr - start >= size) continue;
    put("snapvm: guest RAM lost: page at offset ");
    put_hex(addr - start);
    put(" of ");
    put(r.backing);
    put(" cannot be read (the file was truncated, or its filesystem is full); the VM stops\n");
    ::_exit(kExitGuestMemoryLost);
  }
  // Not guest RAM: a bug; crash as usual.
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

void register_guest_memory(const void* addr, size_t size, const char* backing) {
  for (auto& r : g_ranges) {
    if (r.size.load() != 0) continue;
    std::strncpy(r.backing, backing, sizeof r.backing - 1);
    r.start.store(reinterpret_cast<uintptr_t>(addr), std::memory_order_release);
    r.size.store(size, std::memory_order_release);
    return;
  }
}

void unregister_guest_memory(const void* addr) {
  for (auto& r : g_ranges) {
    if (r.start.load() == reinterpret_cast<uintptr_t>(addr)) {
      r.size.store(0, std::memory_order_release);
      r.start.store(0, std::memory_order_release);
    }
  }
}

void install_memory_fault_handler() {
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, nullptr);
}

}  // namespace snapvm
