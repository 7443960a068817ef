#include "state/machine_shape.h"

#include "snapshot/format.h"

namespace snapvm::state {

void encode(ByteWriter& w, const MachineShape& m) {
  w.u32(m.vcpu_count);
  w.u32(static_cast<uint32_t>(m.memory.size()));
  for (const auto& r : m.memory) {
    w.u64(r.gpa);
    w.u64(r.size);
  }
  w.u32(static_cast<uint32_t>(m.devices.size()));
  for (const auto& d : m.devices) {
    w.u32(static_cast<uint32_t>(d.kind));
    w.u32(d.virtio_type);
    w.u64(d.mmio_base);
    w.u64(d.mmio_size);
    w.u32(d.irq);
    w.str(d.name);
    w.str(d.backend);
  }
  w.str(m.kernel_cmdline);
}

MachineShape decode_machine_shape(ByteReader& r) {
  MachineShape m;
  m.vcpu_count = r.u32();
  if (r.ok() && (m.vcpu_count == 0 || m.vcpu_count > format::kMaxVcpus)) {
    r.fail(fmt::format("vCPU count {} is outside 1..{}", m.vcpu_count, format::kMaxVcpus));
  }
  uint32_t nm = r.count(format::kMaxRamRegions, 16);
  m.memory.resize(nm);
  for (auto& reg : m.memory) {
    reg.gpa = r.u64();
    reg.size = r.u64();
  }
  uint32_t nd = r.count(format::kMaxDevices, 36);
  for (uint32_t i = 0; i < nd && r.ok(); ++i) {
    DeviceConfig d;
    uint32_t kind = r.u32();
    if (r.ok() && (kind < 1 || kind > 5)) r.fail(fmt::format("unknown device kind {}", kind));
    d.kind = static_cast<DeviceKind>(kind);
    d.virtio_type = r.u32();
    d.mmio_base = r.u64();
    d.mmio_size = r.u64();
    d.irq = r.u32();
    d.name = r.str(format::kMaxStringBytes);
    d.backend = r.str(format::kMaxStringBytes);
    m.devices.push_back(std::move(d));
  }
  m.kernel_cmdline = r.str(format::kMaxStringBytes);
  return m;
}

}  // namespace snapvm::state
