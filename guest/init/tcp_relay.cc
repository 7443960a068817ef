#include "tcp_relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
// After sys/socket.h, which it needs.
#include <linux/vm_sockets.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "agent/protocol.h"

namespace snapvm::guest {
namespace {

int connect_local_tcp(uint16_t port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(s);
    return -1;
  }
  return s;
}

// Copies both ways until both directions have ended, passing each
// half-close on (an HTTP client may shut its side down after the request).
void join(int a, int b) {
  int fds[2] = {a, b};
  bool open[2] = {true, true};  // direction i: fds[i] -> fds[1 - i]
  char buf[65536];
  while (open[0] || open[1]) {
    pollfd p[2];
    int n = 0, which[2];
    for (int i = 0; i < 2; ++i) {
      if (open[i]) {
        which[n] = i;
        p[n++] = {fds[i], POLLIN, 0};
      }
    }
    if (::poll(p, static_cast<nfds_t>(n), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int k = 0; k < n; ++k) {
      if (p[k].revents == 0) continue;
      int i = which[k];
      ssize_t got = ::recv(fds[i], buf, sizeof buf, 0);
      if (got <= 0) {
        open[i] = false;
        ::shutdown(fds[1 - i], SHUT_WR);
        continue;
      }
      for (ssize_t off = 0; off < got;) {
        ssize_t w = ::send(fds[1 - i], buf + off, static_cast<size_t>(got - off), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        off += w;
      }
    }
  }
}

[[noreturn]] void serve_relay(int listener, uint16_t port) {
  ::prctl(PR_SET_NAME, "snapvm-relay");
  ::signal(SIGCHLD, SIG_IGN);  // connection handlers are reaped by the kernel
  for (;;) {
    sockaddr_vm peer{};
    socklen_t len = sizeof peer;
    int c = ::accept4(listener, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno != EINTR && errno != ECONNABORTED) ::sleep(1);
      continue;
    }
    // As for the agent: only the host, never a process in the guest.
    if (peer.svm_cid != VMADDR_CID_HOST || ::fork() != 0) {
      ::close(c);
      continue;
    }
    ::close(listener);
    int t = connect_local_tcp(port);
    if (t >= 0) join(c, t);
    ::_exit(0);
  }
}

}  // namespace

bool start_tcp_relay(uint16_t port, std::string& error) {
  int s = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = agent::kTcpRelayBase + port;
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(s, 128) != 0) {
    int e = errno;
    if (s >= 0) ::close(s);
    if (e == EADDRINUSE) return true;  // relayed already (a program started again)
    error = "relay for TCP port " + std::to_string(port) + ": " + std::strerror(e);
    return false;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    serve_relay(s, port);
  }
  ::close(s);
  if (pid < 0) {
    error = std::string("relay: fork: ") + std::strerror(errno);
    return false;
  }
  return true;
}

int probe_tcp_main(int argc, char** argv) {
  if (argc != 2) return 2;
  int port = std::atoi(argv[1]);
  if (port <= 0 || port > 65535) return 2;
  int s = connect_local_tcp(static_cast<uint16_t>(port));
  if (s < 0) return 1;
  ::close(s);
  return 0;
}

}  // namespace snapvm::guest
