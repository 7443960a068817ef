#include "vmm/page_server_watchdog.h"

#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "base/memory_faults.h"
#include "sandbox/seccomp.h"

namespace snapvm {

void PageServerWatchdog::end_the_vmm(const std::string& line) {
  std::string text = "snapvm: " + line + "\n";
  (void)!::write(STDERR_FILENO, text.data(), text.size());
  // vCPUs waiting on the page server wait killably: exit_group ends them.
  ::_exit(kExitGuestMemoryLost);
}

PageServerWatchdog::Progress PageServerWatchdog::pages_present(std::vector<std::span<uint8_t>> regions) {
  return [regions = std::move(regions), residency = std::vector<unsigned char>()]() mutable {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    uint64_t present = 0;
    for (const auto& r : regions) {
      residency.resize((r.size() + page - 1) / page);
      if (::mincore(r.data(), r.size(), residency.data()) != 0) continue;
      for (unsigned char v : residency) present += v & 1;
    }
    return present;
  };
}

PageServerWatchdog::PageServerWatchdog(int uffd, std::string socket_path, std::chrono::milliseconds timeout,
                                       OnStall on_stall, Progress progress)
    : uffd_(uffd),
      socket_path_(std::move(socket_path)),
      timeout_(timeout),
      on_stall_(std::move(on_stall)),
      progress_(std::move(progress)) {
  thread_ = std::thread([this] {
    sandbox::enter_or_die(sandbox::ThreadKind::kDevice);
    watch();
  });
}

PageServerWatchdog::~PageServerWatchdog() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void PageServerWatchdog::watch() {
  using Clock = std::chrono::steady_clock;
  // Ten samples per timeout, at most one a second: a stall is reported
  // between `timeout` and `timeout` plus one period after it began.
  const auto period = std::clamp<std::chrono::milliseconds>(timeout_ / 10, std::chrono::milliseconds(1),
                                                            std::chrono::seconds(1));
  bool waiting = false;               // the last sample found a fault queued, and no progress
  Clock::time_point waiting_since{};  // the first of that unbroken run of samples
  uint64_t last_progress = progress_ ? progress_() : 0;
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, period, [this] { return stopping_; })) {
    pollfd p{uffd_, POLLIN, 0};
    const bool queued = ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
    const uint64_t progress = progress_ ? progress_() : 0;
    const bool moved = progress != last_progress;
    last_progress = progress;
    if (!queued || moved) {
      waiting = false;
      continue;
    }
    const auto now = Clock::now();
    if (!waiting) {
      waiting = true;
      waiting_since = now;
    }
    if (now - waiting_since < timeout_) continue;
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - waiting_since);
    on_stall_(fmt::format("the page server at {} has left guest memory faults unread for {:.1f} s "
                          "(--page-fault-timeout {:.1f}); the VMM stops",
                          socket_path_, waited.count() / 1000.0, timeout_.count() / 1000.0));
    return;
  }
}

}  // namespace snapvm
