// Guest RAM served by a userfaultfd page server, without a VM: the
// handshake happens only when asked for (the restore asks once the state is
// checked), and a page server that stops reading faults ends the VMM with
// one line instead of leaving it hung (vmm/page_server_watchdog.h).
#include <gtest/gtest.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "vmm/external_memory.h"
#include "vmm/page_server_watchdog.h"

namespace snapvm {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kRegionBytes = 4 << 20;

state::ExternalRam one_region() { return state::external_ram_for({{0x4000'0000, kRegionBytes}}); }

// Regions registered with a userfaultfd, or a skip where this host allows
// none (vm.unprivileged_userfaultfd=0 without CAP_SYS_PTRACE).
#define REGISTER_OR_SKIP(var)                                                  \
  auto var##_r = register_for_page_server(one_region());                      \
  if (!var##_r) GTEST_SKIP() << var##_r.error().describe();                   \
  ExternalMemory var = std::move(*var##_r)

// Resolves the fault at `addr` with a zero page (what a page server does
// with UFFDIO_COPY of its file's bytes).
void serve_zero(int uffd, uint64_t addr) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uffdio_zeropage z{};
  z.range.start = addr & ~(page - 1);
  z.range.len = page;
  ::ioctl(uffd, UFFDIO_ZEROPAGE, &z);  // EEXIST: served already
}

TEST(PageServer, NothingReachesThePageServerUntilTheHandshake) {
  const std::string path = ::testing::TempDir() + "page-server-" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  auto someone_connected = [&] {
    pollfd p{listener, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  };

  REGISTER_OR_SKIP(memory);
  EXPECT_FALSE(someone_connected()) << "registering the regions must not contact the page server";

  auto conn = hand_to_page_server(path, memory.uffd.get(), memory.handshake);
  ASSERT_TRUE(conn) << conn.error().describe();
  ASSERT_TRUE(someone_connected());
  int accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(accepted, 0);
  char body[4096];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  iovec iov{body, sizeof body};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(accepted, &msg, 0);
  ASSERT_GT(n, 0);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  ASSERT_TRUE(c != nullptr && c->cmsg_type == SCM_RIGHTS);
  int received = -1;
  std::memcpy(&received, CMSG_DATA(c), sizeof received);
  auto regions = nlohmann::json::parse(std::string(body, static_cast<size_t>(n)), nullptr, false);
  ASSERT_TRUE(regions.is_array() && regions.size() == 1) << std::string(body, static_cast<size_t>(n));
  EXPECT_EQ(regions[0]["base_host_virt_addr"], reinterpret_cast<uint64_t>(memory.regions[0].data()));
  EXPECT_EQ(regions[0]["size"], kRegionBytes);
  EXPECT_EQ(regions[0]["offset"], 0u);

  // The descriptor received serves the regions: a fault on them is read
  // from it and answered through it.
  std::thread toucher([&] { EXPECT_EQ(memory.regions[0].data()[12345], 0); });
  pollfd p{received, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  uffd_msg ev{};
  ASSERT_EQ(::read(received, &ev, sizeof ev), static_cast<ssize_t>(sizeof ev));
  EXPECT_EQ(ev.event, UFFD_EVENT_PAGEFAULT);
  serve_zero(received, ev.arg.pagefault.address);
  toucher.join();
  ::close(received);
  ::close(accepted);
  ::close(listener);
  ::unlink(path.c_str());
}

TEST(PageServerWatchdog, AFaultLeftUnreadEndsTheVmmWithOneLine) {
  REGISTER_OR_SKIP(memory);
  std::promise<std::string> said;
  const auto start = std::chrono::steady_clock::now();
  auto watchdog = std::make_unique<PageServerWatchdog>(memory.uffd.get(), "/run/pager.sock", 300ms,
                                                       [&](const std::string& line) { said.set_value(line); });
  // A vCPU touching a page the stalled page server never provides.
  std::thread toucher([&] { (void)*reinterpret_cast<volatile uint8_t*>(memory.regions[0].data() + 8192); });
  auto line = said.get_future();
  ASSERT_EQ(line.wait_for(10s), std::future_status::ready) << "a fault waited 10 s and nothing was said";
  const auto after = std::chrono::steady_clock::now() - start;
  EXPECT_GE(after, 300ms) << "reported before the timeout";
  const std::string text = line.get();
  EXPECT_NE(text.find("the page server at /run/pager.sock has left guest memory faults unread for"), std::string::npos)
      << text;
  EXPECT_NE(text.find("the VMM stops"), std::string::npos) << text;
  EXPECT_EQ(text.find('\n'), std::string::npos) << "one line";
  serve_zero(memory.uffd.get(), reinterpret_cast<uint64_t>(memory.regions[0].data() + 8192));
  toucher.join();
  watchdog.reset();
}

TEST(PageServerWatchdog, APageServerThatKeepsUpIsNeverReported) {
  REGISTER_OR_SKIP(memory);
  std::atomic<bool> stalled{false}, done{false};
  PageServerWatchdog watchdog(memory.uffd.get(), "/run/pager.sock", 100ms, [&](const std::string&) { stalled = true; });
  // A page server answering every fault, and a guest faulting for ten
  // timeouts in a row, one page after another.
  std::thread server([&] {
    while (!done) {
      pollfd p{memory.uffd.get(), POLLIN, 0};
      if (::poll(&p, 1, 10) != 1) continue;
      uffd_msg ev{};
      if (::read(memory.uffd.get(), &ev, sizeof ev) == sizeof ev && ev.event == UFFD_EVENT_PAGEFAULT) {
        serve_zero(memory.uffd.get(), ev.arg.pagefault.address);
      }
    }
  });
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t faulted = 0;
  for (auto end = std::chrono::steady_clock::now() + 1s; std::chrono::steady_clock::now() < end;) {
    (void)*reinterpret_cast<volatile uint8_t*>(memory.regions[0].data() + (faulted++ * page) % kRegionBytes);
    std::this_thread::sleep_for(200us);
  }
  done = true;
  server.join();
  EXPECT_GT(faulted, 100u);
  EXPECT_FALSE(stalled) << "a page server serving every fault was reported as stalled";
}

// A page server may leave a fault queued while it fills other pages first
// (a prefetch of the working set, say): guest pages becoming present is
// progress, and the VMM must not be ended for it. Seen in the KVM suite:
// the prefetching test page server's VMM was stopped under emulation.
TEST(PageServerWatchdog, APageServerBusyFillingOtherPagesIsNotReported) {
  REGISTER_OR_SKIP(memory);
  std::atomic<bool> stalled{false};
  uint8_t* const base = memory.regions[0].data();
  PageServerWatchdog watchdog(memory.uffd.get(), "/run/pager.sock", 100ms,
                              [&](const std::string&) { stalled = true; },
                              PageServerWatchdog::pages_present({memory.regions[0].span()}));
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  std::thread toucher([&] { (void)*reinterpret_cast<volatile uint8_t*>(base + 8192); });
  // Ten timeouts of filling other pages, the fault left queued meanwhile.
  uint64_t filled = 0;
  for (auto end = std::chrono::steady_clock::now() + 1s; std::chrono::steady_clock::now() < end; ++filled) {
    serve_zero(memory.uffd.get(), reinterpret_cast<uint64_t>(base + (16 + filled % 512) * page));
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_FALSE(stalled) << "a page server filling " << filled << " pages was reported as stalled";
  serve_zero(memory.uffd.get(), reinterpret_cast<uint64_t>(base + 8192));
  toucher.join();
}

}  // namespace
}  // namespace snapvm
