#include "tools/common/sample_state.h"

#include <cstring>

namespace snapvm::sample {
namespace {

constexpr uint64_t kCore64 = 0x6030'0000'0010'0000;   // 64-bit core register
constexpr uint64_t kCore128 = 0x6040'0000'0010'0000;  // 128-bit V registers
constexpr uint64_t kCore32 = 0x6020'0000'0010'0000;   // FPSR, FPCR
constexpr uint64_t kSys64 = 0x6030'0000'0013'0000;
constexpr uint64_t kFw64 = 0x6030'0000'0014'0000;
constexpr uint64_t kSveZ = 0x6080'0000'0015'0000;     // 2048-bit Z register slice

uint64_t sysreg(int op0, int op1, int crn, int crm, int op2) {
  return kSys64 | (uint64_t(op0) << 14) | (uint64_t(op1) << 11) | (uint64_t(crn) << 7) | (uint64_t(crm) << 3) |
         uint64_t(op2);
}

state::Register reg(uint64_t id, size_t bytes, uint64_t seed) {
  state::Register r{id, std::vector<uint8_t>(bytes)};
  for (size_t i = 0; i < bytes; i += 8) {
    uint64_t v = mix64(seed + id + i);
    std::memcpy(r.value.data() + i, &v, std::min<size_t>(8, bytes - i));
  }
  return r;
}

}  // namespace

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

bool page_has_data(uint64_t page, double density, uint64_t seed, uint64_t cluster_pages) {
  uint64_t unit = page / cluster_pages;
  return static_cast<double>(mix64(unit ^ (seed << 40)) >> 11) * 0x1.0p-53 < density;
}

void fill_ram(std::span<uint8_t> ram, double density, uint64_t seed, uint64_t cluster_pages) {
  const size_t page = format::kPageSize;
  for (size_t p = 0; p * page < ram.size(); ++p) {
    uint8_t* dst = ram.data() + p * page;
    if (!page_has_data(p, density, seed, cluster_pages)) {
      std::memset(dst, 0, page);
      continue;
    }
    uint64_t x = mix64(p * 0x100000001b3ull + seed);
    for (size_t i = 0; i < page; i += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::memcpy(dst + i, &x, 8);
    }
  }
}

state::SnapshotState make_state(uint32_t vcpus, std::span<const RamExtent> memory, uint64_t seed) {
  state::SnapshotState s;
  s.arch = format::Arch::kArm64;
  s.machine.vcpu_count = vcpus;
  for (const auto& m : memory) s.machine.memory.push_back({m.gpa, m.size});
  s.machine.kernel_cmdline = "console=ttyAMA0 quiet panic=-1";
  using state::DeviceKind;
  s.machine.devices = {
      {DeviceKind::kPl011, 0, 0x0900'0000, 0x1000, 1, "console", ""},
      {DeviceKind::kVirtioMmio, 2, 0x0a00'0000, 0x200, 16, "blk0", "/var/lib/snapvm/rootfs.img"},
      {DeviceKind::kVirtioMmio, 4, 0x0a00'0200, 0x200, 17, "rng", ""},
      {DeviceKind::kVirtioMmio, 19, 0x0a00'0400, 0x200, 18, "vsock", "/run/snapvm/vm0.vsock"},
  };

  for (uint32_t i = 0; i < vcpus; ++i) {
    state::VcpuState v;
    v.index = i;
    v.arch_id = 0x8000'0000ull | i;
    v.mp_state = i == 0 ? 0 : 5;
    uint64_t vs = seed * 1000 + i;
    for (int x = 0; x < 31; ++x) v.registers.push_back(reg(kCore64 + 2 * x, 8, vs));
    v.registers.push_back(reg(kCore64 + 62, 8, vs));  // SP
    v.registers.push_back(reg(kCore64 + 64, 8, vs));  // PC
    v.registers.push_back(reg(kCore64 + 66, 8, vs));  // PSTATE
    for (int q = 0; q < 32; ++q) v.registers.push_back(reg(kCore128 + 0x54 + 4 * q, 16, vs));
    v.registers.push_back(reg(kCore32 + 0xd4, 4, vs));  // FPSR
    v.registers.push_back(reg(kCore32 + 0xd5, 4, vs));  // FPCR
    for (int fw = 0; fw < 4; ++fw) v.registers.push_back(reg(kFw64 + fw, 8, vs));
    v.registers.push_back(reg(sysreg(3, 0, 1, 0, 0), 8, vs));    // SCTLR_EL1
    v.registers.push_back(reg(sysreg(3, 0, 2, 0, 0), 8, vs));    // TTBR0_EL1
    v.registers.push_back(reg(sysreg(3, 0, 2, 0, 1), 8, vs));    // TTBR1_EL1
    v.registers.push_back(reg(sysreg(3, 0, 2, 0, 2), 8, vs));    // TCR_EL1
    v.registers.push_back(reg(sysreg(3, 0, 10, 2, 0), 8, vs));   // MAIR_EL1
    v.registers.push_back(reg(sysreg(3, 0, 12, 0, 0), 8, vs));   // VBAR_EL1
    v.registers.push_back(reg(sysreg(3, 3, 14, 3, 1), 8, vs));   // CNTV_CTL_EL0 (TIMER_CTL)
    v.registers.push_back(reg(sysreg(3, 3, 14, 3, 2), 8, vs));   // TIMER_CNT encoding
    v.registers.push_back(reg(sysreg(3, 3, 14, 0, 2), 8, vs));   // TIMER_CVAL encoding
    v.registers.push_back(reg(kSveZ, 256, vs));                  // exercises 2048-bit values
    v.events = std::vector<uint8_t>(64, 0);
    s.vcpus.push_back(std::move(v));
  }

  state::GicV3State g;
  g.nr_irqs = 128;
  for (uint32_t off = 0; off < 0x80; off += 4) g.distributor.push_back({off, static_cast<uint32_t>(mix64(off + seed))});
  for (uint32_t i = 0; i < vcpus; ++i) {
    uint64_t mpidr = i;
    state::GicRedistributor rd{mpidr, {}};
    for (uint32_t off : {0x0u, 0x14u, 0x10080u, 0x10100u, 0x10200u, 0x10300u, 0x10c04u}) {
      rd.regs.push_back({off, static_cast<uint32_t>(mix64(off + i))});
    }
    g.redistributors.push_back(std::move(rd));
    state::GicCpuInterface ci{mpidr, {}};
    for (uint64_t id : {0xc665ull, 0xc664ull, 0xc230ull, 0xc643ull, 0xc660ull, 0xc666ull, 0xc667ull}) {
      ci.regs.push_back({id, mix64(id + i)});
    }
    g.cpu_interfaces.push_back(std::move(ci));
  }
  g.line_levels = {{0, 0}, {32, 0x10}};
  s.arch_vm = std::move(g);

  for (uint32_t slot = 1; slot < 4; ++slot) {
    state::DeviceState d;
    d.slot = slot;
    state::VirtioMmioState t;
    t.device_id = s.machine.devices[slot].virtio_type;
    t.device_features = 0x1'3000'0000ull;
    t.driver_features = 0x1'0000'0000ull;
    t.status = 0xf;
    t.queues.resize(slot == 3 ? 3 : 1);
    for (size_t q = 0; q < t.queues.size(); ++q) {
      auto& vq = t.queues[q];
      vq.max_size = 256;
      vq.size = 128;
      vq.ready = true;
      vq.desc_addr = kRamBase + 0x10'0000 * (slot * 4 + q);
      vq.avail_addr = vq.desc_addr + 0x800;
      vq.used_addr = vq.desc_addr + 0x1000;
      vq.last_avail_idx = static_cast<uint16_t>(mix64(seed + q) & 0xffff);
      vq.next_used_idx = vq.last_avail_idx;
    }
    d.transport = std::move(t);
    if (slot == 3) d.device_specific = {1, 0, 0, 0, 3, 0, 0, 0};  // a vsock connection table
    s.devices.push_back(std::move(d));
  }

  s.port_forwards = {{3, 80, 8080, 2, 1, "127.0.0.1"}};
  s.clock = {0x1234'5678'9abc, 62'500'000, 1'795'000'000'000'000'000, 123'456'789'000};
  s.host.kernel_release = "6.1.0-sample";
  s.host.cpu_model = "sample arm64 cpu";
  s.host.host_page_size = 4096;
  s.host.cpu_regs = {{sysreg(3, 0, 0, 0, 0), 0x410fd083}, {sysreg(3, 0, 0, 0, 5), 0x80000000}};
  s.creator = state::Creator{"snapvm 0.1.0", 1'795'000'000'000'000'000};
  return s;
}

state::SnapshotState make_x86_state(uint32_t vcpus, std::span<const RamExtent> memory, uint64_t seed) {
  using namespace state::x86;
  state::SnapshotState s = make_state(vcpus, memory, seed);  // devices, forwards, clock, creator
  s.arch = format::Arch::kX86_64;
  s.machine.kernel_cmdline = "console=ttyS0 quiet panic=-1 reboot=k pci=off";
  s.machine.devices[0] = {state::DeviceKind::kSerial8250, 0, 0x3f8, 8, 4, "console", ""};
  for (size_t d = 1; d < s.machine.devices.size(); ++d) {
    s.machine.devices[d].mmio_base = 0xd000'0000 + 0x200 * (d - 1);
    s.machine.devices[d].irq = 5 + static_cast<uint32_t>(d - 1);
  }
  for (auto& v : s.vcpus) {
    uint64_t vs = seed * 1000 + v.index;
    v.arch_id = v.index;
    v.mp_state = v.index == 0 ? 0 : 3;
    v.registers.clear();
    v.registers.push_back(reg(struct_id(Struct::kCpuid), 8 + 40 * 24, vs));
    uint32_t nent = 24;
    std::memcpy(v.registers.back().value.data(), &nent, 4);
    v.registers.push_back({struct_id(Struct::kTscKhz), {0x40, 0x9c, 0x27, 0, 0, 0, 0, 0}});  // 2.6 GHz
    v.registers.push_back(reg(struct_id(Struct::kRegs), 144, vs));
    v.registers.push_back(reg(struct_id(Struct::kSregs), 312, vs));
    v.registers.push_back(reg(struct_id(Struct::kXsave), 4096, vs));
    v.registers.push_back(reg(struct_id(Struct::kXcrs), 392, vs));
    v.registers.push_back(reg(struct_id(Struct::kDebugRegs), 128, vs));
    v.registers.push_back(reg(struct_id(Struct::kLapic), 1024, vs));
    for (uint32_t msr : {0x10u, 0x174u, 0x175u, 0x176u, 0x1a0u, 0x277u, 0x2ffu, 0xc0000080u, 0xc0000081u,
                         0xc0000082u, 0xc0000084u, 0xc0000102u, 0x4b564d00u, 0x4b564d01u, 0x6e0u}) {
      v.registers.push_back(reg(msr_id(msr), 8, vs));
    }
    v.events.assign(64, 0);
  }
  VmState vm;
  for (auto k : {VmRecord::kPit, VmRecord::kClock, VmRecord::kPicMaster, VmRecord::kPicSlave, VmRecord::kIoapic}) {
    auto r = reg(static_cast<uint64_t>(k), vm_record_size(k), seed);
    vm.records.push_back({k, std::move(r.value)});
  }
  s.arch_vm = std::move(vm);
  for (auto& d : s.devices) {
    if (!d.transport) continue;
    for (auto& q : d.transport->queues) {
      q.desc_addr -= kRamBase - kX86RamBase;
      q.avail_addr -= kRamBase - kX86RamBase;
      q.used_addr -= kRamBase - kX86RamBase;
    }
  }
  s.clock.counter_frequency_hz = 2'600'000'000;
  s.host.cpu_model = "AuthenticAMD family 0x19 model 0x1 stepping 1";
  s.host.cpu_regs = {{id(Kind::kIdentity, 0), 0x69746e6568747541ull}, {id(Kind::kIdentity, 1), 0xa00f11}};
  return s;
}

}  // namespace snapvm::sample
