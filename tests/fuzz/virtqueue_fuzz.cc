// libFuzzer target: a hostile guest's view of a virtqueue. The input becomes
// guest RAM (rings, descriptors, indirect tables, buffers) and the queue
// configuration; popping, gathering, scattering and publishing must never
// touch memory outside guest RAM or loop forever.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "devices/virtio/virtqueue.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kRam = 64 * 1024;
  if (size < 8) return 0;
  std::vector<uint8_t> ram(kRam, 0);
  std::memcpy(ram.data(), data + 8, std::min(size - 8, kRam));
  snapvm::GuestMemory mem({{0x10000, {ram.data(), ram.size()}}});

  snapvm::virtio::Virtqueue q(256);
  auto& c = q.config();
  c.size = static_cast<uint16_t>(1u << (data[0] % 10));
  c.desc_addr = 0x10000 + (data[1] % 16) * 0x1000;
  c.avail_addr = 0x10000 + (data[2] % 16) * 0x1000 + (data[3] & 0x6);
  c.used_addr = 0x10000 + (data[4] % 16) * 0x1000 + (data[5] & 0xc);
  c.ready = true;
  q.set_indices(static_cast<uint16_t>(data[6] * 257), static_cast<uint16_t>(data[7] * 3));
  if (!q.activate(mem)) return 0;

  uint8_t scratch[512];
  for (int i = 0; i < 64; ++i) {
    auto chain = q.pop(mem);
    if (!chain) break;
    chain->read(i, scratch);
    chain->write(i * 3, scratch);
    q.push_used(mem, *chain, static_cast<uint32_t>(chain->writable_bytes()));
  }
  (void)q.should_notify(mem);
  return 0;
}
