#include "state/snapshot_state.h"

#include <set>

namespace snapvm::state {
namespace {

using format::Tag;

template <typename T>
Section make_section(Tag tag, const T& record, bool required = true) {
  ByteWriter w;
  encode(w, record);
  return Section{static_cast<uint32_t>(tag), required ? format::kSectionRequired : 0u, w.take()};
}

// Decodes one section's payload. Bytes left over are fields appended by a
// newer minor version, which this reader may ignore; from its own or an older
// minor they mean corruption.
template <typename Decode>
auto decode_section(const Section& s, uint16_t file_minor, Decode decode)
    -> Result<decltype(decode(std::declval<ByteReader&>()))> {
  ByteReader r(s.payload, s.file_offset + format::kSectionHeaderSize,
               fmt::format("section {}", format::tag_name(s.tag)));
  auto value = decode(r);
  if (r.ok() && !r.at_end() && file_minor <= format::kMinor) {
    r.fail(fmt::format("{} unexpected trailing bytes", r.remaining()));
  }
  if (!r.ok()) return tl::unexpected(r.error());
  return value;
}

Result<const Section*> exactly_one(const SnapshotFile& f, Tag tag) {
  auto all = f.find_all(tag);
  if (all.size() != 1) {
    return make_error(ErrorCode::kDataLoss, "metadata: expected one {} section, found {}", format::tag_name(
                      static_cast<uint32_t>(tag)), all.size());
  }
  return all.front();
}

Status cross_check(const SnapshotState& s, const SnapshotFile& f) {
  if (s.vcpus.size() != s.machine.vcpu_count) {
    return make_error(ErrorCode::kDataLoss, "machine has {} vCPUs but {} vcpu-state sections", s.machine.vcpu_count,
                      s.vcpus.size());
  }
  std::set<uint32_t> seen;
  for (const auto& v : s.vcpus) {
    if (v.index >= s.machine.vcpu_count || !seen.insert(v.index).second) {
      return make_error(ErrorCode::kDataLoss, "vcpu-state index {} is out of range or repeated", v.index);
    }
  }
  std::set<uint32_t> slots;
  for (const auto& d : s.devices) {
    if (d.slot >= s.machine.devices.size() || !slots.insert(d.slot).second) {
      return make_error(ErrorCode::kDataLoss, "device-state slot {} is out of range or repeated", d.slot);
    }
  }
  if (s.external_ram) {
    // RAM is in the memory file: none here, and the regions must be the machine's.
    if (!f.ram_regions().empty()) {
      return make_error(ErrorCode::kDataLoss, "a snapshot with an external-ram section also holds RAM");
    }
    const auto& ext = s.external_ram->regions;
    if (ext.size() != s.machine.memory.size()) {
      return make_error(ErrorCode::kDataLoss, "machine has {} memory regions, external RAM has {}",
                        s.machine.memory.size(), ext.size());
    }
    for (size_t i = 0; i < ext.size(); ++i) {
      if (ext[i].gpa != s.machine.memory[i].gpa || ext[i].size != s.machine.memory[i].size) {
        return make_error(ErrorCode::kDataLoss, "memory region {} differs between machine config and external RAM", i);
      }
    }
  }
  const auto& ram = f.ram_regions();
  if (!s.external_ram && ram.size() != s.machine.memory.size()) {
    return make_error(ErrorCode::kDataLoss, "machine has {} memory regions, RAM layout has {}", s.machine.memory.size(),
                      ram.size());
  }
  for (size_t i = 0; i < ram.size() && !s.external_ram; ++i) {
    if (ram[i].gpa != s.machine.memory[i].gpa || ram[i].size != s.machine.memory[i].size) {
      return make_error(ErrorCode::kDataLoss, "memory region {} differs between machine config and RAM layout", i);
    }
  }
  if (s.arch == format::Arch::kArm64) {
    if (!std::holds_alternative<GicV3State>(s.arch_vm)) {
      return make_error(ErrorCode::kDataLoss, "arm64 snapshot has no gicv3-state section (or x86 state)");
    }
    for (const auto& v : s.vcpus) {
      for (const auto& reg : v.registers) {
        if (x86::in_space(reg.id)) return make_error(ErrorCode::kDataLoss, "arm64 vCPU {} holds x86 state", v.index);
      }
    }
  } else {
    if (!std::holds_alternative<x86::VmState>(s.arch_vm)) {
      return make_error(ErrorCode::kDataLoss, "x86_64 snapshot has no x86-vm-state section (or a GIC)");
    }
    for (const auto& v : s.vcpus) {
      std::string problem = x86::check_vcpu(v);
      if (!problem.empty()) return make_error(ErrorCode::kDataLoss, "x86_64 vCPU {}: {}", v.index, problem);
    }
  }
  return {};
}

}  // namespace

SnapshotContents to_contents(const SnapshotState& s) {
  SnapshotContents c;
  c.arch = s.arch;
  c.sections.push_back(make_section(Tag::kMachineConfig, s.machine));
  for (const auto& v : s.vcpus) c.sections.push_back(make_section(Tag::kVcpuState, v));
  if (const auto* gic = std::get_if<GicV3State>(&s.arch_vm)) c.sections.push_back(make_section(Tag::kGicV3State, *gic));
  if (const auto* x86 = std::get_if<x86::VmState>(&s.arch_vm)) c.sections.push_back(make_section(Tag::kX86VmState, *x86));
  for (const auto& d : s.devices) c.sections.push_back(make_section(Tag::kDeviceState, d));
  c.sections.push_back(make_section(Tag::kPortForwards, s.port_forwards));
  c.sections.push_back(make_section(Tag::kClock, s.clock));
  c.sections.push_back(make_section(Tag::kHostIdentity, s.host));
  if (s.creator) c.sections.push_back(make_section(Tag::kCreator, *s.creator, /*required=*/false));
  if (s.external_ram) c.sections.push_back(make_section(Tag::kExternalRam, *s.external_ram));
  return c;
}

Result<SnapshotState> load_state(const SnapshotFile& f) {
  SnapshotState s;
  const uint16_t minor = f.header().minor;
  s.arch = f.header().arch;
  s.machine = SNAPVM_TRY(decode_section(*SNAPVM_TRY(exactly_one(f, Tag::kMachineConfig)), minor, decode_machine_shape));
  for (const Section* sec : f.find_all(Tag::kVcpuState)) {
    s.vcpus.push_back(SNAPVM_TRY(decode_section(*sec, minor, decode_vcpu_state)));
  }
  auto gics = f.find_all(Tag::kGicV3State);
  auto x86s = f.find_all(Tag::kX86VmState);
  if (gics.size() + x86s.size() > 1) {
    return make_error(ErrorCode::kDataLoss, "metadata: more than one interrupt-controller section");
  }
  if (!gics.empty()) s.arch_vm = SNAPVM_TRY(decode_section(*gics.front(), minor, decode_gic_state));
  if (!x86s.empty()) s.arch_vm = SNAPVM_TRY(decode_section(*x86s.front(), minor, x86::decode_vm_state));
  for (const Section* sec : f.find_all(Tag::kDeviceState)) {
    s.devices.push_back(SNAPVM_TRY(decode_section(*sec, minor, decode_device_state)));
  }
  s.port_forwards = SNAPVM_TRY(decode_section(*SNAPVM_TRY(exactly_one(f, Tag::kPortForwards)), minor, decode_port_forwards));
  s.clock = SNAPVM_TRY(decode_section(*SNAPVM_TRY(exactly_one(f, Tag::kClock)), minor, decode_clock));
  s.host = SNAPVM_TRY(decode_section(*SNAPVM_TRY(exactly_one(f, Tag::kHostIdentity)), minor, decode_host_identity));
  if (const Section* c = f.find(Tag::kCreator)) s.creator = SNAPVM_TRY(decode_section(*c, minor, decode_creator));
  auto external = f.find_all(Tag::kExternalRam);
  if (external.size() > 1) return make_error(ErrorCode::kDataLoss, "metadata: more than one external-ram section");
  if (!external.empty()) s.external_ram = SNAPVM_TRY(decode_section(*external.front(), minor, decode_external_ram));
  SNAPVM_CHECK_OK(cross_check(s, f));
  return s;
}

}  // namespace snapvm::state
