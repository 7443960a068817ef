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
  const auto& ram = f.ram_regions();
  if (ram.size() != s.machine.memory.size()) {
    return make_error(ErrorCode::kDataLoss, "machine has {} memory regions, RAM layout has {}", s.machine.memory.size(),
                      ram.size());
  }
  for (size_t i = 0; i < ram.size(); ++i) {
    if (ram[i].gpa != s.machine.memory[i].gpa || ram[i].size != s.machine.memory[i].size) {
      return make_error(ErrorCode::kDataLoss, "memory region {} differs between machine config and RAM layout", i);
    }
  }
  if (s.arch == format::Arch::kArm64 && !s.gic) {
    return make_error(ErrorCode::kDataLoss, "arm64 snapshot has no gicv3-state section");
  }
  return {};
}

}  // namespace

SnapshotContents to_contents(const SnapshotState& s) {
  SnapshotContents c;
  c.arch = s.arch;
  c.sections.push_back(make_section(Tag::kMachineConfig, s.machine));
  for (const auto& v : s.vcpus) c.sections.push_back(make_section(Tag::kVcpuState, v));
  if (s.gic) c.sections.push_back(make_section(Tag::kGicV3State, *s.gic));
  for (const auto& d : s.devices) c.sections.push_back(make_section(Tag::kDeviceState, d));
  c.sections.push_back(make_section(Tag::kPortForwards, s.port_forwards));
  c.sections.push_back(make_section(Tag::kClock, s.clock));
  c.sections.push_back(make_section(Tag::kHostIdentity, s.host));
  if (s.creator) c.sections.push_back(make_section(Tag::kCreator, *s.creator, /*required=*/false));
  return c;
}

Result<SnapshotState> load_state(const SnapshotFile& f) {
  SnapshotState s;
  const uint16_t minor = f.header().minor;
  s.arch = f.header().arch;
  s.machine = SNAPVM_TRY(decode_section(*SNAPVM_TRY(exactly_one(f, Tag::kMachineConfig)), minor, decode_machine_config));
  for (const Section* sec : f.find_all(Tag::kVcpuState)) {
    s.vcpus.push_back(SNAPVM_TRY(decode_section(*sec, minor, decode_vcpu_state)));
  }
  auto gics = f.find_all(Tag::kGicV3State);
  if (gics.size() > 1) return make_error(ErrorCode::kDataLoss, "metadata: more than one gicv3-state section");
  if (!gics.empty()) s.gic = SNAPVM_TRY(decode_section(*gics.front(), minor, decode_gic_state));
  for (const Section* sec : f.find_all(Tag::kDeviceState)) {
    s.devices.push_back(SNAPVM_TRY(decode_section(*sec, minor, decode_device_state)));
  }
  s.port_forwards = SNAPVM_TRY(decode_section(*SNAPVM_TRY(exactly_one(f, Tag::kPortForwards)), minor, decode_port_forwards));
  s.clock = SNAPVM_TRY(decode_section(*SNAPVM_TRY(exactly_one(f, Tag::kClock)), minor, decode_clock));
  s.host = SNAPVM_TRY(decode_section(*SNAPVM_TRY(exactly_one(f, Tag::kHostIdentity)), minor, decode_host_identity));
  if (const Section* c = f.find(Tag::kCreator)) s.creator = SNAPVM_TRY(decode_section(*c, minor, decode_creator));
  SNAPVM_CHECK_OK(cross_check(s, f));
  return s;
}

}  // namespace snapvm::state
