#include "network.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <vector>

namespace snapvm::guest {
namespace {

// An interface name into an ifreq, cut to IFNAMSIZ - 1 and NUL-terminated.
void set_name(ifreq& ifr, const std::string& dev) {
  std::memset(ifr.ifr_name, 0, IFNAMSIZ);
  std::memcpy(ifr.ifr_name, dev.data(), std::min<size_t>(dev.size(), IFNAMSIZ - 1));
}

bool set_addr(int s, const std::string& dev, unsigned long request, const std::string& text) {
  ifreq ifr{};
  set_name(ifr, dev);
  auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
  sin->sin_family = AF_INET;
  if (::inet_pton(AF_INET, text.c_str(), &sin->sin_addr) != 1) return false;
  return ::ioctl(s, request, &ifr) == 0;
}

bool bring_up(int s, const std::string& dev) {
  ifreq ifr{};
  set_name(ifr, dev);
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) return false;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  return ::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
}

bool default_route(int s, const std::string& dev, const std::string& gateway) {
  rtentry rt{};
  auto* gw = reinterpret_cast<sockaddr_in*>(&rt.rt_gateway);
  gw->sin_family = AF_INET;
  if (::inet_pton(AF_INET, gateway.c_str(), &gw->sin_addr) != 1) return false;
  reinterpret_cast<sockaddr_in*>(&rt.rt_dst)->sin_family = AF_INET;
  reinterpret_cast<sockaddr_in*>(&rt.rt_genmask)->sin_family = AF_INET;
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  std::string name = dev;
  rt.rt_dev = name.data();
  return ::ioctl(s, SIOCADDRT, &rt) == 0;
}

bool parse_mac(const std::string& text, uint8_t out[6]) {
  unsigned v[6];
  if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return false;
  for (int i = 0; i < 6; ++i) out[i] = static_cast<uint8_t>(v[i]);
  return true;
}

// Broadcasts "IP is at MAC" (an ARP request for its own address).
bool gratuitous_arp(const std::string& dev, const in_addr& ip) {
  int s = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ARP));
  if (s < 0) return false;
  ifreq ifr{};
  set_name(ifr, dev);
  bool ok = ::ioctl(s, SIOCGIFINDEX, &ifr) == 0;
  const int index = ifr.ifr_ifindex;
  ok = ok && ::ioctl(s, SIOCGIFHWADDR, &ifr) == 0;
  if (ok) {
    uint8_t frame[42] = {};
    std::memset(frame, 0xff, 6);                       // to everyone
    std::memcpy(frame + 6, ifr.ifr_hwaddr.sa_data, 6);  // from us
    frame[12] = 0x08, frame[13] = 0x06;                // ARP
    const uint8_t arp_head[8] = {0, 1, 8, 0, 6, 4, 0, 1};  // Ethernet, IPv4, request
    std::memcpy(frame + 14, arp_head, 8);
    std::memcpy(frame + 22, ifr.ifr_hwaddr.sa_data, 6);  // sender MAC
    std::memcpy(frame + 28, &ip, 4);                      // sender IP
    std::memcpy(frame + 38, &ip, 4);                      // target IP: the same
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = index;
    to.sll_halen = 6;
    std::memset(to.sll_addr, 0xff, 6);
    ok = ::sendto(s, frame, sizeof frame, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) == sizeof frame;
  }
  ::close(s);
  return ok;
}

}  // namespace

int set_macs_and_announce(const std::vector<std::string>& macs, std::string& error) {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  for (size_t i = 0; i < macs.size(); ++i) {
    if (macs[i].empty()) continue;
    ifreq ifr{};
    const std::string dev = "eth" + std::to_string(i);
    set_name(ifr, dev);
    ifr.ifr_hwaddr.sa_family = 1;  // ARPHRD_ETHER
    if (!parse_mac(macs[i], reinterpret_cast<uint8_t*>(ifr.ifr_hwaddr.sa_data)) ||
        ::ioctl(s, SIOCSIFHWADDR, &ifr) != 0) {
      error = dev + ": MAC " + macs[i] + ": " + std::strerror(errno);
      ::close(s);
      return -1;
    }
  }
  ::close(s);
  int announced = 0;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return 0;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET || !(a->ifa_flags & IFF_UP) ||
        (a->ifa_flags & IFF_LOOPBACK)) {
      continue;
    }
    if (gratuitous_arp(a->ifa_name, reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr)) ++announced;
  }
  ::freeifaddrs(list);
  return announced;
}

std::string configure_network(const std::string& cmdline) {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return std::string("snapvm-init: network: no socket: ") + std::strerror(errno);
  bring_up(s, "lo");
  std::string spec;
  std::istringstream words(cmdline);
  for (std::string w; words >> w;) {
    if (w.rfind("ip=", 0) == 0) spec = w.substr(3);
  }
  std::string result;
  if (spec.empty()) {
    result = "snapvm-init: network: no ip= on the command line; interfaces left as they are";
  } else {
    std::vector<std::string> f;
    std::stringstream parts(spec);
    for (std::string p; std::getline(parts, p, ':');) f.push_back(p);
    f.resize(7);
    const std::string& client = f[0];
    const std::string& gateway = f[2];
    const std::string netmask = f[3].empty() ? "255.255.255.0" : f[3];
    const std::string dev = f[5].empty() ? "eth0" : f[5];
    if (client.empty() || f[6] == "dhcp" || f[6] == "on" || f[6] == "any") {
      result = "snapvm-init: network: ip=" + spec + ": only static addresses (ip=ADDR::GW:MASK::DEV:off)";
    } else if (!set_addr(s, dev, SIOCSIFADDR, client) || !set_addr(s, dev, SIOCSIFNETMASK, netmask) ||
               !bring_up(s, dev)) {
      result = "snapvm-init: network: " + dev + ": " + std::strerror(errno);
    } else if (!gateway.empty() && !default_route(s, dev, gateway)) {
      result = "snapvm-init: network: default route via " + gateway + ": " + std::strerror(errno);
    } else {
      result = "snapvm-init: network: " + dev + " " + client + "/" + netmask +
               (gateway.empty() ? "" : " via " + gateway);
    }
  }
  ::close(s);
  return result;
}

}  // namespace snapvm::guest
