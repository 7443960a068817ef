#include "devices/tap.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>

namespace snapvm {

Result<UniqueFd> open_tap(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name.find('/') != std::string::npos) {
    return make_error(ErrorCode::kInvalidArgument, "tap `{}`: a network interface name of 1 to {} characters", name,
                      IFNAMSIZ - 1);
  }
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return errno_error("tap " + name + ": /dev/net/tun");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    return errno_error("tap " + name + (errno == EPERM ? " (not yours, and no CAP_NET_ADMIN to create it)" : ""));
  }
  int header = 12;  // virtio_net_hdr_v1, num_buffers included
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &header) != 0) return errno_error("tap " + name + ": TUNSETVNETHDRSZ");
  if (::ioctl(fd.get(), TUNSETOFFLOAD, 0) != 0) return errno_error("tap " + name + ": TUNSETOFFLOAD");
  return fd;
}

Status set_tap_offloads(int tap, uint64_t f) {
  auto has = [f](int bit) { return (f >> bit) & 1; };
  unsigned offloads = 0;
  if (has(1)) {  // GUEST_CSUM: segmentation needs it too
    offloads |= TUN_F_CSUM;
    if (has(7)) offloads |= TUN_F_TSO4;
    if (has(8)) offloads |= TUN_F_TSO6;
    if (has(9) && (has(7) || has(8))) offloads |= TUN_F_TSO_ECN;
  }
  if (::ioctl(tap, TUNSETOFFLOAD, offloads) != 0) return errno_error("tap: TUNSETOFFLOAD");
  return {};
}

}  // namespace snapvm
