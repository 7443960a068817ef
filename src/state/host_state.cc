#include "state/host_state.h"

#include "snapshot/format.h"

namespace snapvm::state {

void encode(ByteWriter& w, const ClockState& c) {
  w.u64(c.guest_counter);
  w.u64(c.counter_frequency_hz);
  w.i64(c.host_realtime_ns);
  w.i64(c.host_monotonic_ns);
}

ClockState decode_clock(ByteReader& r) {
  ClockState c;
  c.guest_counter = r.u64();
  c.counter_frequency_hz = r.u64();
  c.host_realtime_ns = r.i64();
  c.host_monotonic_ns = r.i64();
  return c;
}

void encode(ByteWriter& w, const HostIdentity& h) {
  w.u32(static_cast<uint32_t>(h.cpu_regs.size()));
  for (const auto& reg : h.cpu_regs) {
    w.u64(reg.id);
    w.u64(reg.value);
  }
  w.str(h.kernel_release);
  w.str(h.cpu_model);
  w.u32(h.host_page_size);
}

HostIdentity decode_host_identity(ByteReader& r) {
  HostIdentity h;
  uint32_t n = r.count(format::kMaxIdentityRegs, 16);
  h.cpu_regs.resize(n);
  for (auto& reg : h.cpu_regs) {
    reg.id = r.u64();
    reg.value = r.u64();
  }
  h.kernel_release = r.str(format::kMaxStringBytes);
  h.cpu_model = r.str(format::kMaxStringBytes);
  h.host_page_size = r.u32();
  return h;
}

void encode(ByteWriter& w, const std::vector<PortForward>& fwds) {
  w.u32(static_cast<uint32_t>(fwds.size()));
  for (const auto& f : fwds) {
    w.u32(f.guest_cid);
    w.u32(f.guest_port);
    w.u32(f.host_port);
    w.u16(f.family);
    w.u16(f.socket_type);
    w.str(f.host_address);
  }
}

std::vector<PortForward> decode_port_forwards(ByteReader& r) {
  uint32_t n = r.count(format::kMaxPortForwards, 20);
  std::vector<PortForward> out;
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    PortForward f;
    f.guest_cid = r.u32();
    f.guest_port = r.u32();
    f.host_port = r.u32();
    f.family = r.u16();
    f.socket_type = r.u16();
    f.host_address = r.str(format::kMaxStringBytes);
    if (r.ok() && (f.host_port > 65535)) r.fail(fmt::format("host port {} is out of range", f.host_port));
    out.push_back(std::move(f));
  }
  return out;
}

void encode(ByteWriter& w, const Creator& c) {
  w.str(c.program);
  w.i64(c.created_unix_ns);
}

Creator decode_creator(ByteReader& r) {
  Creator c;
  c.program = r.str(format::kMaxStringBytes);
  c.created_unix_ns = r.i64();
  return c;
}

}  // namespace snapvm::state
