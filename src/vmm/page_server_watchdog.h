// Ends the VMM when its userfaultfd page server stops serving, instead of
// leaving it hung: a vCPU (or a device thread) that touches a page the page
// server never provides waits in the kernel for good, and Firecracker,
// whose handshake we follow, waits with it.
//
// What the VMM can see without taking faults away from the page server:
// poll() on its own copy of the userfaultfd says whether a fault is queued
// that nobody has read (poll consumes nothing). A working page server reads
// each fault as it comes, and a faulting thread cannot fault again before
// it is served, so the queue stays non-empty for long only when the page
// server has stopped reading: stalled, stopped, or dead (its copy closed,
// ours keeps the queue). A page server may also leave faults queued while
// it works on something else (prefetching every page first, say): that is
// progress too, and shows as guest pages becoming present. So the watchdog
// samples the queue and a progress count (the pages present in guest RAM);
// when every sample over `timeout` found a fault waiting and the count
// never moved, it reports once and ends the VMM.
//
// Not seen: a fault the page server has read and then never answers, while
// nothing else faults (any further fault queues behind it and is seen).
// The kernel counts those only in /proc/PID/fdinfo, which a jailed VMM has
// no /proc to read.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <span>
#include <thread>
#include <vector>

namespace snapvm {

class PageServerWatchdog {
 public:
  // Called once, from the watchdog's thread, when the page server stalled.
  using OnStall = std::function<void(const std::string& line)>;
  // A count that grows while the page server serves (empty: none).
  using Progress = std::function<uint64_t()>;
  // The pages present in `regions` (mincore): what a page server's
  // UFFDIO_COPY and UFFDIO_ZEROPAGE add to.
  static Progress pages_present(std::vector<std::span<uint8_t>> regions);
  // The default: the line on stderr and exit status kExitGuestMemoryLost.
  static void end_the_vmm(const std::string& line);

  // Watches `uffd` (borrowed: it must outlive the watchdog) from a thread
  // of its own (seccomp: device kind). `socket_path` names the page server
  // in the line.
  PageServerWatchdog(int uffd, std::string socket_path, std::chrono::milliseconds timeout,
                     OnStall on_stall = end_the_vmm, Progress progress = {});
  ~PageServerWatchdog();
  PageServerWatchdog(const PageServerWatchdog&) = delete;
  PageServerWatchdog& operator=(const PageServerWatchdog&) = delete;

 private:
  void watch();

  const int uffd_;
  const std::string socket_path_;
  const std::chrono::milliseconds timeout_;
  const OnStall on_stall_;
  const Progress progress_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace snapvm
