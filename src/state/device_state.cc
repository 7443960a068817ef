#include "state/device_state.h"

#include "snapshot/format.h"

namespace snapvm::state {

void encode(ByteWriter& w, const DeviceState& d) {
  w.u32(d.slot);
  w.u8(d.transport.has_value() ? 1 : 0);
  if (d.transport) {
    const auto& t = *d.transport;
    w.u32(t.device_id);
    w.u64(t.device_features);
    w.u64(t.driver_features);
    w.u32(t.device_features_sel);
    w.u32(t.driver_features_sel);
    w.u32(t.queue_sel);
    w.u32(t.status);
    w.u32(t.interrupt_status);
    w.u32(t.config_generation);
    w.u32(static_cast<uint32_t>(t.queues.size()));
    for (const auto& q : t.queues) {
      w.u16(q.max_size);
      w.u16(q.size);
      w.u8(q.ready ? 1 : 0);
      w.u64(q.desc_addr);
      w.u64(q.avail_addr);
      w.u64(q.used_addr);
      w.u16(q.last_avail_idx);
      w.u16(q.next_used_idx);
    }
  }
  w.blob(d.device_specific);
}

DeviceState decode_device_state(ByteReader& r) {
  DeviceState d;
  d.slot = r.u32();
  uint8_t has_transport = r.u8();
  if (has_transport > 1) r.fail("transport flag is not 0 or 1");
  if (has_transport == 1) {
    VirtioMmioState t;
    t.device_id = r.u32();
    t.device_features = r.u64();
    t.driver_features = r.u64();
    t.device_features_sel = r.u32();
    t.driver_features_sel = r.u32();
    t.queue_sel = r.u32();
    t.status = r.u32();
    t.interrupt_status = r.u32();
    t.config_generation = r.u32();
    uint32_t n = r.count(format::kMaxQueuesPerDevice, 33);
    t.queues.resize(n);
    for (auto& q : t.queues) {
      q.max_size = r.u16();
      q.size = r.u16();
      uint8_t ready = r.u8();
      if (ready > 1) r.fail("queue ready flag is not 0 or 1");
      q.ready = ready == 1;
      q.desc_addr = r.u64();
      q.avail_addr = r.u64();
      q.used_addr = r.u64();
      q.last_avail_idx = r.u16();
      q.next_used_idx = r.u16();
      if (r.ok() && q.size > q.max_size) r.fail(fmt::format("queue size {} exceeds its maximum {}", q.size, q.max_size));
    }
    d.transport = std::move(t);
  }
  auto blob = r.blob(format::kMaxDeviceBlobBytes);
  d.device_specific.assign(blob.begin(), blob.end());
  return d;
}

}  // namespace snapvm::state
