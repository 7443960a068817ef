// A userfaultfd page server written to Firecracker's handshake, as users of
// the Uffd memory backend write theirs: it listens on a Unix socket, takes
// one connection carrying the JSON list of guest memory regions and the
// userfaultfd (SCM_RIGHTS), then serves every missing-page fault from the
// memory file. With --prefetch it copies all of memory in at the first fault.
// With --stall-after N it serves N faults, then stops reading the
// userfaultfd (a page server that hangs) while keeping its connection.
//
//   snapvm-test-page-server SOCKET MEMORY_FILE [--prefetch] [--stall-after N]
//
// It ends when the VMM closes its connection and prints what it served.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

struct Region {
  uint64_t base, size, offset, page;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "page-server: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

// Copies [addr, addr+len) from the file image; pages already present
// (EEXIST) are skipped one by one.
uint64_t copy_in(int uffd, const uint8_t* image, const Region& r, uint64_t addr, uint64_t len) {
  uffdio_copy c{};
  c.dst = addr;
  c.src = reinterpret_cast<uint64_t>(image + r.offset + (addr - r.base));
  c.len = len;
  if (::ioctl(uffd, UFFDIO_COPY, &c) == 0) return len / r.page;
  if (errno == EEXIST && len > r.page) {
    uint64_t pages = 0;
    for (uint64_t a = addr; a < addr + len; a += r.page) pages += copy_in(uffd, image, r, a, r.page);
    return pages;
  }
  if (errno == EEXIST || errno == EAGAIN) return 0;  // raced with another fault, or the range changed
  die("UFFDIO_COPY");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s SOCKET MEMORY_FILE [--prefetch] [--stall-after N]\n", argv[0]);
    return 2;
  }
  bool prefetch = false;
  long long stall_after = -1;  // never
  for (int i = 3; i < argc; ++i) {
    if (std::string(argv[i]) == "--prefetch") prefetch = true;
    if (std::string(argv[i]) == "--stall-after" && i + 1 < argc) stall_after = std::atoll(argv[++i]);
  }
  int file = ::open(argv[2], O_RDONLY | O_CLOEXEC);
  if (file < 0) die("open the memory file");
  struct stat st {};
  ::fstat(file, &st);
  auto* image = static_cast<const uint8_t*>(
      st.st_size > 0 ? ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, file, 0) : nullptr);
  if (image == MAP_FAILED) die("mmap the memory file");

  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", argv[1]);
  ::unlink(argv[1]);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener, 1) != 0) {
    die("listen");
  }
  std::printf("page-server: listening on %s\n", argv[1]);
  std::fflush(stdout);
  int conn = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (conn < 0) die("accept");

  char body[64 * 1024];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  iovec iov{body, sizeof body};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(conn, &msg, 0);
  if (n <= 0) die("recvmsg");
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS) {
    std::fprintf(stderr, "page-server: no userfaultfd in the handshake\n");
    return 1;
  }
  int uffd = -1;
  std::memcpy(&uffd, CMSG_DATA(c), sizeof uffd);
  auto mappings = nlohmann::json::parse(std::string(body, static_cast<size_t>(n)), nullptr, false);
  if (!mappings.is_array() || mappings.empty()) {
    std::fprintf(stderr, "page-server: the handshake is not a JSON list of regions\n");
    return 1;
  }
  std::vector<Region> regions;
  for (const auto& m : mappings) {
    Region r{m.at("base_host_virt_addr").get<uint64_t>(), m.at("size").get<uint64_t>(), m.at("offset").get<uint64_t>(),
             m.at("page_size_kib").get<uint64_t>() * 1024};
    if (r.offset + r.size > static_cast<uint64_t>(st.st_size)) {
      std::fprintf(stderr, "page-server: a region reaches past the memory file\n");
      return 1;
    }
    regions.push_back(r);
  }

  uint64_t faults = 0, pages = 0;
  bool prefetched = false;
  for (;;) {
    const bool stalled = stall_after >= 0 && faults >= static_cast<uint64_t>(stall_after);
    pollfd fds[2] = {{uffd, POLLIN, 0}, {conn, POLLIN, 0}};
    if (stalled) fds[0].fd = -1;  // hung: faults stay unread
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if ((fds[1].revents & (POLLHUP | POLLIN)) != 0) {
      char b;
      if (::recv(conn, &b, 1, MSG_DONTWAIT) == 0) break;  // the VMM is gone
    }
    if ((fds[0].revents & POLLIN) == 0) continue;
    uffd_msg ev{};
    ssize_t got = ::read(uffd, &ev, sizeof ev);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (got != sizeof ev) die("read the userfaultfd");
    if (ev.event != UFFD_EVENT_PAGEFAULT) continue;
    ++faults;
    uint64_t at = ev.arg.pagefault.address;
    if (prefetch && !prefetched) {
      for (const auto& r : regions) pages += copy_in(uffd, image, r, r.base, r.size);
      prefetched = true;
      continue;
    }
    for (const auto& r : regions) {
      if (at >= r.base && at < r.base + r.size) {
        uint64_t page_addr = at & ~(r.page - 1);
        pages += copy_in(uffd, image, r, page_addr, r.page);
      }
    }
  }
  std::printf("page-server: served %llu faults, copied %llu pages%s\n", static_cast<unsigned long long>(faults),
              static_cast<unsigned long long>(pages), prefetch ? " (prefetched)" : stall_after >= 0 ? " (then stalled)" : "");
  return 0;
}
