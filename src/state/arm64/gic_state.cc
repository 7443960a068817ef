#include "state/arm64/gic_state.h"

#include "snapshot/format.h"

namespace snapvm::state {
namespace {

void encode_mmio(ByteWriter& w, const std::vector<MmioReg32>& regs) {
  w.u32(static_cast<uint32_t>(regs.size()));
  for (const auto& r : regs) {
    w.u32(r.offset);
    w.u32(r.value);
  }
}

std::vector<MmioReg32> decode_mmio(ByteReader& r) {
  uint32_t n = r.count(format::kMaxGicRegisters, 8);
  std::vector<MmioReg32> out(n);
  for (auto& reg : out) {
    reg.offset = r.u32();
    reg.value = r.u32();
  }
  return out;
}

}  // namespace

void encode(ByteWriter& w, const GicV3State& g) {
  w.u32(g.nr_irqs);
  encode_mmio(w, g.distributor);
  w.u32(static_cast<uint32_t>(g.redistributors.size()));
  for (const auto& rd : g.redistributors) {
    w.u64(rd.mpidr);
    encode_mmio(w, rd.regs);
  }
  w.u32(static_cast<uint32_t>(g.cpu_interfaces.size()));
  for (const auto& ci : g.cpu_interfaces) {
    w.u64(ci.mpidr);
    w.u32(static_cast<uint32_t>(ci.regs.size()));
    for (const auto& reg : ci.regs) {
      w.u64(reg.id);
      w.u64(reg.value);
    }
  }
  encode_mmio(w, g.line_levels);
}

GicV3State decode_gic_state(ByteReader& r) {
  GicV3State g;
  g.nr_irqs = r.u32();
  g.distributor = decode_mmio(r);
  uint32_t nr = r.count(format::kMaxVcpus, 12);
  for (uint32_t i = 0; i < nr && r.ok(); ++i) {
    GicRedistributor rd;
    rd.mpidr = r.u64();
    rd.regs = decode_mmio(r);
    g.redistributors.push_back(std::move(rd));
  }
  uint32_t nc = r.count(format::kMaxVcpus, 12);
  for (uint32_t i = 0; i < nc && r.ok(); ++i) {
    GicCpuInterface ci;
    ci.mpidr = r.u64();
    uint32_t n = r.count(format::kMaxGicRegisters, 16);
    ci.regs.resize(n);
    for (auto& reg : ci.regs) {
      reg.id = r.u64();
      reg.value = r.u64();
    }
    g.cpu_interfaces.push_back(std::move(ci));
  }
  g.line_levels = decode_mmio(r);
  return g;
}

}  // namespace snapvm::state
