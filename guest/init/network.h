// Brings up the guest's network from the kernel command line, in the
// kernel's own nfsroot format (which Debian's kernel does not act on
// itself: virtio_net is a module, loaded by init):
//   ip=CLIENT::GATEWAY:NETMASK::DEVICE:off     e.g. ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off
// Without ip=, interfaces are left to the image. The loopback is always up.
#pragma once

#include <string>
#include <vector>

namespace snapvm::guest {

// Returns a line for the console saying what was done (or why not).
std::string configure_network(const std::string& cmdline);

// After a restore: gives eth<i> the MAC macs[i] (empty: keeps its own),
// then announces every Ethernet interface that is up with an IPv4 address
// with a gratuitous ARP, so peers and switches learn where (and who) the
// clone is. Returns how many interfaces were announced, or -1 on an error
// (`error` says which).
int set_macs_and_announce(const std::vector<std::string>& macs, std::string& error);

}  // namespace snapvm::guest
