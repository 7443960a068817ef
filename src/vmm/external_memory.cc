#include "vmm/external_memory.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include <nlohmann/json.hpp>

#include "base/unix_socket.h"
#include "snapshot/raw_memory.h"

namespace snapvm {

Result<ExternalMemory> map_memory_file(const std::string& path, const state::ExternalRam& layout) {
  std::vector<RawRegion> regions;
  for (const auto& r : layout.regions) regions.push_back({r.file_offset, r.size});
  ExternalMemory out;
  out.regions = SNAPVM_TRY(map_raw_memory(path, regions));
  return out;
}

Result<ExternalMemory> register_for_page_server(const state::ExternalRam& layout) {
  ExternalMemory out;
  for (const auto& r : layout.regions) out.regions.push_back(SNAPVM_TRY(MappedRegion::anonymous(r.size)));

  int raw = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (raw < 0) return errno_error("userfaultfd (is vm.unprivileged_userfaultfd or CAP_SYS_PTRACE needed?)");
  out.uffd = UniqueFd(raw);
  uffdio_api api{};
  api.api = UFFD_API;
  if (::ioctl(out.uffd.get(), UFFDIO_API, &api) != 0) return errno_error("userfaultfd: UFFDIO_API");
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  nlohmann::json mappings = nlohmann::json::array();
  for (size_t i = 0; i < out.regions.size(); ++i) {
    uffdio_register reg{};
    reg.range.start = reinterpret_cast<uint64_t>(out.regions[i].data());
    reg.range.len = out.regions[i].size();
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(out.uffd.get(), UFFDIO_REGISTER, &reg) != 0) return errno_error("userfaultfd: UFFDIO_REGISTER");
    // Both spellings of the page size: page_size_kib (Firecracker up to
    // 1.9) and page_size in bytes (1.10 on); page servers ignore the other.
    mappings.push_back({{"base_host_virt_addr", reg.range.start},
                        {"size", reg.range.len},
                        {"offset", layout.regions[i].file_offset},
                        {"page_size_kib", page / 1024},
                        {"page_size", page}});
  }
  out.handshake = mappings.dump();
  return out;
}

Result<UniqueFd> hand_to_page_server(const std::string& socket_path, int uffd, const std::string& handshake) {
  UniqueFd sock = SNAPVM_TRY(connect_unix(socket_path));
  std::string body = handshake;
  iovec iov{body.data(), body.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &uffd, sizeof uffd);
  ssize_t n = ::sendmsg(sock.get(), &msg, MSG_NOSIGNAL);
  if (n < 0) return errno_error("page server " + socket_path + ": send the userfaultfd");
  if (static_cast<size_t>(n) != body.size()) {
    return make_error(ErrorCode::kIo, "page server {}: sent {} of {} bytes of the handshake", socket_path, n, body.size());
  }
  return sock;
}

}  // namespace snapvm
