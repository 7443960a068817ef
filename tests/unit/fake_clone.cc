// Stands in for `snapvm restore --paused` in the pool's tests: it speaks a
// VM's control socket (info, pause, resume) and its vsock socket's agent
// (CONNECT, then a sync request answered as a guest would), so the pool's
// bookkeeping (refill, take, release, crash replacement, limits) runs under
// the sanitizers without KVM. The KVM test Image.* runs the pool on real
// clones. FAKE_CLONE_FAIL=1 makes it fail as a broken snapshot would.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/protocol.h"

namespace {

using nlohmann::json;

int listen_at(const std::string& path) {
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  ::unlink(path.c_str());
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s, 16) != 0) std::exit(3);
  return s;
}

std::string read_line(int c) {
  std::string line;
  char ch;
  while (::recv(c, &ch, 1, 0) == 1 && ch != '\n') line.push_back(ch);
  return line;
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* fail = std::getenv("FAKE_CLONE_FAIL"); fail != nullptr && *fail == '1') {
    std::fprintf(stderr, "snapvm: fake.snap: checksum mismatch\n");
    return 1;
  }
  std::string api, vsock;
  std::vector<uint32_t> guest_ports;
  for (int i = 1; i + 1 < argc; ++i) {
    std::string a = argv[i];
    if (a == "--api") api = argv[i + 1];
    if (a == "--vsock") vsock = argv[i + 1];
    if (a == "-p") guest_ports.push_back(static_cast<uint32_t>(std::stoul(std::string(argv[i + 1]).substr(12))));
  }
  json forwards = json::array();
  std::vector<int> tcp;
  for (uint32_t gp : guest_ports) {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof in;
    ::bind(s, reinterpret_cast<sockaddr*>(&in), sizeof in);
    ::listen(s, 16);
    ::getsockname(s, reinterpret_cast<sockaddr*>(&in), &len);
    forwards.push_back({{"host_address", "127.0.0.1"}, {"host_port", ntohs(in.sin_port)}, {"guest_port", gp}});
    tcp.push_back(s);
  }
  int control = listen_at(api), agent = listen_at(vsock);
  bool paused = true;
  for (;;) {
    pollfd fds[2] = {{control, POLLIN, 0}, {agent, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[0].revents) {
      int c = ::accept(control, nullptr, nullptr);
      json req = json::parse(read_line(c), nullptr, false);
      std::string op = req.is_object() ? req.value("op", "") : "";
      if (op == "pause") paused = true;
      if (op == "resume") paused = false;
      json reply = {{"ok", true}, {"state", paused ? "paused" : "running"}, {"mem_bytes", 256 << 20},
                    {"port_forwards", forwards}};
      std::string out = reply.dump() + "\n";
      (void)!::send(c, out.data(), out.size(), MSG_NOSIGNAL);
      ::close(c);
    }
    if (fds[1].revents) {
      int c = ::accept(agent, nullptr, nullptr);
      if (read_line(c).rfind("CONNECT ", 0) == 0 && !paused) {  // a paused guest answers nobody
        std::string ok = "OK 1\n";
        (void)!::send(c, ok.data(), ok.size(), MSG_NOSIGNAL);
        snapvm::agent::FrameReader reader;
        char buf[4096];
        ssize_t n;
        std::optional<snapvm::agent::FrameReader::Message> m;
        while (!m && (n = ::recv(c, buf, sizeof buf, 0)) > 0) {
          reader.feed({reinterpret_cast<uint8_t*>(buf), static_cast<size_t>(n)});
          m = reader.next();
        }
        std::vector<uint8_t> out;
        snapvm::agent::append_frame(out, snapvm::agent::Frame::kOk,
                                    json{{"clock_set", true}, {"reseeded", true}, {"announced", 0}}.dump());
        (void)!::send(c, out.data(), out.size(), MSG_NOSIGNAL);
      }
      ::close(c);
    }
  }
}
