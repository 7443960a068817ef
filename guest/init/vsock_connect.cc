#include "vsock_connect.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
// After sys/socket.h, which it needs.
#include <linux/vm_sockets.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace snapvm::guest {

int vsock_connect_main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: vsock-connect PORT [CID]\n");
    return 2;
  }
  int s = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_port = static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10));
  addr.svm_cid = argc > 2 ? static_cast<unsigned>(std::strtoul(argv[2], nullptr, 10)) : VMADDR_CID_HOST;
  if (s < 0 || ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::fprintf(stderr, "vsock-connect: %s\n", std::strerror(errno));
    return 1;
  }
  bool in_open = true;
  char buf[65536];
  for (;;) {
    pollfd fds[2] = {{s, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    if (::poll(fds, in_open ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (in_open && fds[1].revents) {
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n <= 0) {
        in_open = false;
        ::shutdown(s, SHUT_WR);
      } else if (::send(s, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) {
        return 1;
      }
    }
    if (fds[0].revents) {
      ssize_t n = ::recv(s, buf, sizeof buf, 0);
      if (n <= 0) return 0;
      if (::write(STDOUT_FILENO, buf, static_cast<size_t>(n)) != n) return 1;
    }
  }
}

}  // namespace snapvm::guest
