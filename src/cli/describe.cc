#include "cli/describe.h"

#include <sys/stat.h>

#include <ctime>

#include <fmt/format.h>

namespace snapvm::cli {
namespace {

using nlohmann::ordered_json;

std::string_view writer_name(uint64_t kind) {
  switch (kind) {
    case format::kFlagWriterFull: return "full";
    case format::kFlagWriterCompact: return "compact";
    case format::kFlagWriterDiff: return "diff";
  }
  return "unknown";
}

std::string_view mp_state_name(uint32_t s) {
  switch (s) {
    case 0: return "runnable";
    case 1: return "uninitialized";
    case 2: return "init-received";
    case 3: return "halted";
    case 4: return "sipi-received";
    case 5: return "stopped";
    case 10: return "suspended";
  }
  return "unknown";
}

std::string_view virtio_name(uint32_t type) {
  switch (type) {
    case 1: return "virtio-net";
    case 2: return "virtio-blk";
    case 3: return "virtio-console";
    case 4: return "virtio-rng";
    case 19: return "virtio-vsock";
  }
  return "virtio";
}

std::string device_kind(const state::DeviceConfig& d) {
  switch (d.kind) {
    case state::DeviceKind::kVirtioMmio: return std::string(virtio_name(d.virtio_type));
    case state::DeviceKind::kPl011: return "pl011";
    case state::DeviceKind::kPl031: return "pl031";
    case state::DeviceKind::kSerial8250: return "8250-uart";
    case state::DeviceKind::kPl061: return "pl061-gpio";
  }
  return "unknown";
}

std::string utc_time(int64_t unix_ns) {
  std::time_t t = static_cast<std::time_t>(unix_ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

uint64_t allocated_bytes(const SnapshotFile& f) {
  struct stat st {};
  if (::fstat(f.fd(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

std::string hex_value(const std::vector<uint8_t>& le) {
  std::string out = "0x";
  for (auto it = le.rbegin(); it != le.rend(); ++it) out += fmt::format("{:02x}", *it);
  return out;
}

}  // namespace

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string describe_text(const SnapshotFile& f, const state::SnapshotState& s) {
  const Header& h = f.header();
  std::string out;
  auto line = [&](std::string_view label, const std::string& text) { out += fmt::format("{:<10}{}\n", label, text); };
  line("snapshot", f.name());
  line("format", fmt::format("{}.{} {}, {} writer, {} file ({} allocated)", h.major, h.minor,
                             format::arch_name(h.arch), writer_name(h.writer_kind()), human_bytes(h.file_size),
                             human_bytes(allocated_bytes(f))));
  if (s.creator) line("creator", fmt::format("{}, {}", s.creator->program, utc_time(s.creator->created_unix_ns)));
  if (s.external_ram) {
    line("machine", fmt::format("{} vCPU(s), {} RAM in {} region(s) of a separate memory file, {} device(s)",
                                s.machine.vcpu_count, human_bytes(s.external_ram->file_bytes()),
                                s.external_ram->regions.size(), s.machine.devices.size()));
  } else {
    line("machine", fmt::format("{} vCPU(s), {} RAM in {} region(s), {} device(s)", s.machine.vcpu_count,
                                human_bytes(f.ram_bytes()), f.ram_regions().size(), s.machine.devices.size()));
  }
  if (!s.machine.kernel_cmdline.empty()) line("", fmt::format("cmdline \"{}\"", s.machine.kernel_cmdline));
  for (size_t i = 0; i < f.ram_regions().size(); ++i) {
    const auto& r = f.ram_regions()[i];
    line(i == 0 ? "RAM" : "", fmt::format("region {}: guest {:#x}-{:#x} ({}), file offset {:#x}, data {} ({:.1f}%)", i,
                                          r.gpa, r.gpa + r.size, human_bytes(r.size), r.file_offset,
                                          human_bytes(r.data_bytes), 100.0 * r.data_bytes / r.size));
  }
  if (s.external_ram) {
    for (size_t i = 0; i < s.external_ram->regions.size(); ++i) {
      const auto& r = s.external_ram->regions[i];
      line(i == 0 ? "RAM" : "", fmt::format("region {}: guest {:#x}-{:#x} ({}), memory file offset {:#x}", i, r.gpa,
                                            r.gpa + r.size, human_bytes(r.size), r.file_offset));
    }
  }
  const bool x86 = s.arch == format::Arch::kX86_64;
  for (const auto& v : s.vcpus) {
    std::string mix;
    if (x86) {
      size_t msrs = 0;
      for (const auto& reg : v.registers) {
        if (state::x86::kind_of(reg.id) == state::x86::Kind::kMsr) {
          ++msrs;
        } else {
          mix += fmt::format("{}{} {} B", mix.empty() ? "" : ", ", state::x86::register_name(reg.id), reg.value.size());
        }
      }
      mix += fmt::format(", {} MSRs", msrs);
    } else {
      size_t widths[9] = {};
      for (const auto& reg : v.registers) {
        for (int b = 0; b < 9; ++b) {
          if (reg.value.size() == (1u << b)) ++widths[b];
        }
      }
      for (int b = 0; b < 9; ++b) {
        if (widths[b] != 0) mix += fmt::format("{}{}x{}-bit", mix.empty() ? "" : ", ", widths[b], 8 << b);
      }
    }
    line(fmt::format("vCPU {}", v.index), fmt::format("{} {:#x}, {}, {} registers ({})", x86 ? "apic id" : "mpidr",
                                                      v.arch_id, mp_state_name(v.mp_state), v.registers.size(), mix));
  }
  if (const auto* gic = std::get_if<state::GicV3State>(&s.arch_vm)) {
    line("GICv3", fmt::format("{} IRQs, distributor {} regs, {} redistributor(s), {} CPU interface(s), {} level words",
                              gic->nr_irqs, gic->distributor.size(), gic->redistributors.size(),
                              gic->cpu_interfaces.size(), gic->line_levels.size()));
  }
  if (const auto* vm = std::get_if<state::x86::VmState>(&s.arch_vm)) {
    std::string parts;
    for (const auto& r : vm->records) {
      parts += fmt::format("{}{} {} B", parts.empty() ? "" : ", ", state::x86::vm_record_name(r.kind), r.bytes.size());
    }
    line("x86 VM", parts);
  }
  for (const auto& d : s.devices) {
    const auto& cfg = s.machine.devices[d.slot];
    std::string text = fmt::format("{} \"{}\" at {:#x} irq {}", device_kind(cfg), cfg.name, cfg.mmio_base, cfg.irq);
    if (!cfg.backend.empty()) text += fmt::format(", backend {}", cfg.backend);
    if (!d.device_specific.empty()) text += fmt::format(", {} bytes of device state", d.device_specific.size());
    line(fmt::format("device {}", d.slot), text);
    if (d.transport) {
      const auto& t = *d.transport;
      line("", fmt::format("status {:#x}, features {:#x} (driver {:#x}), interrupt status {:#x}", t.status,
                           t.device_features, t.driver_features, t.interrupt_status));
      for (size_t q = 0; q < t.queues.size(); ++q) {
        const auto& vq = t.queues[q];
        line("", fmt::format("queue {}: size {}/{}{}, desc {:#x} avail {:#x} used {:#x}, last_avail {} next_used {}", q,
                             vq.size, vq.max_size, vq.ready ? " ready" : "", vq.desc_addr, vq.avail_addr, vq.used_addr,
                             vq.last_avail_idx, vq.next_used_idx));
      }
    }
  }
  for (const auto& p : s.port_forwards) {
    line("forward", fmt::format("{}:{} -> guest vsock port {}", p.host_address, p.host_port, p.guest_port));
  }
  line("clock", fmt::format("guest counter {:#x} at {} Hz, captured {}", s.clock.guest_counter,
                            s.clock.counter_frequency_hz, utc_time(s.clock.host_realtime_ns)));
  line("host", fmt::format("kernel {}, cpu \"{}\", {} identity registers, page size {}", s.host.kernel_release,
                           s.host.cpu_model, s.host.cpu_regs.size(), s.host.host_page_size));
  if (f.skipped_sections() != 0) line("note", fmt::format("{} unknown optional section(s) skipped", f.skipped_sections()));
  return out;
}

ordered_json describe_json(const SnapshotFile& f, const state::SnapshotState& s) {
  const Header& h = f.header();
  ordered_json j;
  j["path"] = f.name();
  j["format"] = {{"major", h.major}, {"minor", h.minor}, {"arch", format::arch_name(h.arch)},
                 {"writer", writer_name(h.writer_kind())}, {"file_bytes", h.file_size},
                 {"allocated_bytes", allocated_bytes(f)}};
  if (s.creator) j["creator"] = {{"program", s.creator->program}, {"created_unix_ns", s.creator->created_unix_ns}};
  ordered_json mem = ordered_json::array();
  for (const auto& r : f.ram_regions()) {
    mem.push_back({{"gpa", r.gpa}, {"size", r.size}, {"file_offset", r.file_offset}, {"data_bytes", r.data_bytes}});
  }
  ordered_json devices = ordered_json::array();
  for (const auto& d : s.machine.devices) {
    devices.push_back({{"kind", device_kind(d)}, {"name", d.name}, {"mmio_base", d.mmio_base},
                       {"mmio_size", d.mmio_size}, {"irq", d.irq}, {"backend", d.backend}});
  }
  j["machine"] = {{"vcpus", s.machine.vcpu_count}, {"kernel_cmdline", s.machine.kernel_cmdline},
                  {"memory", mem}, {"devices", devices}};
  if (s.external_ram) {
    ordered_json ext = ordered_json::array();
    for (const auto& r : s.external_ram->regions) {
      ext.push_back({{"gpa", r.gpa}, {"size", r.size}, {"memory_file_offset", r.file_offset}});
    }
    j["machine"]["external_memory"] = ext;
  }
  ordered_json vcpus = ordered_json::array();
  for (const auto& v : s.vcpus) {
    ordered_json regs = ordered_json::array();
    for (const auto& reg : v.registers) {
      ordered_json e = {{"id", fmt::format("{:#x}", reg.id)}};
      if (state::x86::in_space(reg.id)) e["name"] = state::x86::register_name(reg.id);
      e["bits"] = reg.value.size() * 8;
      e["value"] = hex_value(reg.value);
      regs.push_back(std::move(e));
    }
    vcpus.push_back({{"index", v.index}, {"arch_id", v.arch_id}, {"mp_state", mp_state_name(v.mp_state)},
                     {"registers", regs}, {"events_bytes", v.events.size()}});
  }
  j["vcpus"] = vcpus;
  if (const auto* gic = std::get_if<state::GicV3State>(&s.arch_vm)) {
    j["gicv3"] = {{"nr_irqs", gic->nr_irqs}, {"distributor_regs", gic->distributor.size()},
                  {"redistributors", gic->redistributors.size()}, {"cpu_interfaces", gic->cpu_interfaces.size()},
                  {"line_level_words", gic->line_levels.size()}};
  }
  if (const auto* vm = std::get_if<state::x86::VmState>(&s.arch_vm)) {
    ordered_json recs = ordered_json::object();
    for (const auto& r : vm->records) recs[std::string(state::x86::vm_record_name(r.kind))] = r.bytes.size();
    j["x86_vm"] = recs;
  }
  ordered_json dstate = ordered_json::array();
  for (const auto& d : s.devices) {
    ordered_json e = {{"slot", d.slot}, {"device_specific_bytes", d.device_specific.size()}};
    if (d.transport) {
      const auto& t = *d.transport;
      ordered_json queues = ordered_json::array();
      for (const auto& q : t.queues) {
        queues.push_back({{"max_size", q.max_size}, {"size", q.size}, {"ready", q.ready}, {"desc", q.desc_addr},
                          {"avail", q.avail_addr}, {"used", q.used_addr}, {"last_avail_idx", q.last_avail_idx},
                          {"next_used_idx", q.next_used_idx}});
      }
      e["virtio_mmio"] = {{"device_id", t.device_id}, {"device_features", t.device_features},
                          {"driver_features", t.driver_features}, {"status", t.status},
                          {"interrupt_status", t.interrupt_status}, {"config_generation", t.config_generation},
                          {"queues", queues}};
    }
    dstate.push_back(e);
  }
  j["devices"] = dstate;
  ordered_json fwds = ordered_json::array();
  for (const auto& p : s.port_forwards) {
    fwds.push_back({{"host_address", p.host_address}, {"host_port", p.host_port}, {"guest_cid", p.guest_cid},
                    {"guest_port", p.guest_port}, {"family", p.family}, {"socket_type", p.socket_type}});
  }
  j["port_forwards"] = fwds;
  j["clock"] = {{"guest_counter", s.clock.guest_counter}, {"counter_frequency_hz", s.clock.counter_frequency_hz},
                {"host_realtime_ns", s.clock.host_realtime_ns}, {"host_monotonic_ns", s.clock.host_monotonic_ns}};
  j["host"] = {{"kernel_release", s.host.kernel_release}, {"cpu_model", s.host.cpu_model},
               {"identity_registers", s.host.cpu_regs.size()}, {"page_size", s.host.host_page_size}};
  j["skipped_optional_sections"] = f.skipped_sections();
  return j;
}

}  // namespace snapvm::cli
