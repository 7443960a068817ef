// libFuzzer target: a hostile guest driving a whole virtio-mmio device (rng,
// block, vsock or net) through its registers, with guest RAM (rings, descriptors,
// buffers) written from the input between register accesses. Nothing it
// does may touch host memory outside guest RAM, crash, or hang the VMM.
//
// Input: byte 0 picks the device (its value modulo 4); then operations, each
// starting with an opcode byte: register write (offset, value), register
// read (offset), RAM write (address, length, bytes), queue notify (index;
// with its top bit set on virtio-net, a frame of the next length byte's
// bytes arrives from the tap instead, for the receive path).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "devices/virtio/block.h"
#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"

namespace {

constexpr size_t kRam = 256 * 1024;

struct Input {
  const uint8_t* p;
  size_t left;
  bool take(void* out, size_t n) {
    if (left < n) return false;
    std::memcpy(out, p, n);
    p += n;
    left -= n;
    return true;
  }
};

const std::string& disk_path() {
  static std::string path = [] {
    char tmpl[] = "/tmp/snapvm-fuzz-disk-XXXXXX";
    int fd = ::mkstemp(tmpl);
    if (fd < 0 || ::ftruncate(fd, 64 * 1024) != 0) std::abort();
    ::close(fd);
    return std::string(tmpl);
  }();
  return path;
}

// The device, and for virtio-net the tap's far end (a socket pair carries
// frames as a tap with IFF_VNET_HDR does).
std::unique_ptr<snapvm::virtio::VirtioDevice> make_device(uint8_t which, snapvm::UniqueFd& tap_peer) {
  using namespace snapvm::virtio;
  switch (which % 4) {
    case 0: return std::make_unique<Rng>();
    case 1: {
      auto b = Block::open(disk_path(), which & 4);
      return b ? std::move(*b) : nullptr;
    }
    case 2: {
      static int n = 0;
      std::string uds = "/tmp/snapvm-fuzz-vsock-" + std::to_string(::getpid()) + "-" + std::to_string(n++ % 4);
      ::unlink(uds.c_str());
      auto v = Vsock::create(3, uds);
      return v ? std::move(*v) : nullptr;
    }
    default: {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) std::abort();
      tap_peer.reset(sv[1]);
      auto n = Net::create(snapvm::UniqueFd(sv[0]), MacAddress{0x02, 0xfc, 0, 0, 0, 1});
      return n ? std::move(*n) : nullptr;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  snapvm::UniqueFd tap_peer;
  auto device = make_device(data[0], tap_peer);
  if (!device) return 0;
  std::vector<uint8_t> ram(kRam, 0);
  snapvm::GuestMemory mem({{0x40000000, {ram.data(), ram.size()}}});
  snapvm::virtio::MmioTransport t(std::move(device), mem, [] {});
  Input in{data + 1, size - 1};
  uint8_t op;
  int budget = 4096;
  while (budget-- > 0 && in.take(&op, 1)) {
    switch (op % 4) {
      case 0: {  // register write
        uint16_t off;
        uint32_t v;
        if (!in.take(&off, 2) || !in.take(&v, 4)) return 0;
        t.mmio_write(off % 0x200, {reinterpret_cast<uint8_t*>(&v), 1u + (op >> 2) % 4});
        break;
      }
      case 1: {  // register read, or (high bit) a saved device record to load
        if (op & 0x80) {
          uint8_t len;
          if (!in.take(&len, 1)) return 0;
          const size_t n = std::min<size_t>(len, in.left);
          (void)t.device().restore_specific({in.p, n});
          in.p += n;
          in.left -= n;
          break;
        }
        uint16_t off;
        uint32_t v = 0;
        if (!in.take(&off, 2)) return 0;
        t.mmio_read(off % 0x200, {reinterpret_cast<uint8_t*>(&v), 1u + (op >> 2) % 4});
        break;
      }
      case 2: {  // guest writes its RAM
        uint32_t addr;
        uint8_t len;
        if (!in.take(&addr, 4) || !in.take(&len, 1)) return 0;
        addr %= kRam;
        size_t n = std::min<size_t>({len, in.left, kRam - addr});
        std::memcpy(ram.data() + addr, in.p, n);
        in.p += n;
        in.left -= n;
        break;
      }
      default: {  // notify
        uint8_t q;
        if (!in.take(&q, 1)) return 0;
        if ((q & 0x80) && tap_peer.valid()) {  // a frame from the tap
          uint8_t len;
          if (!in.take(&len, 1)) return 0;
          size_t n = std::min<size_t>(len, in.left);
          (void)!::write(tap_peer.get(), in.p, n);
          in.p += n;
          in.left -= n;
          break;
        }
        uint32_t v = q % 4;
        t.mmio_write(0x050, {reinterpret_cast<uint8_t*>(&v), 4});
        break;
      }
    }
  }
  return 0;
}
