#include "snapshot/section.h"

#include "base/byte_codec.h"
#include "base/checksum.h"

namespace snapvm {
namespace {

uint64_t section_checksum(uint32_t tag, uint32_t flags, std::span<const uint8_t> payload) {
  ByteWriter w;
  w.u32(tag);
  w.u32(flags);
  w.u64(payload.size());
  w.bytes(payload);
  return checksum64(w.data());
}

}  // namespace

std::vector<uint8_t> encode_sections(std::span<const Section> sections) {
  ByteWriter w;
  for (const auto& s : sections) {
    w.u32(s.tag);
    w.u32(s.flags);
    w.u64(s.payload.size());
    w.u64(section_checksum(s.tag, s.flags, s.payload));
    w.bytes(s.payload);
    w.pad_to(8);
  }
  return w.take();
}

Result<std::vector<Section>> decode_sections(std::span<const uint8_t> area, uint64_t base_offset) {
  std::vector<Section> out;
  ByteReader r(area, base_offset, "metadata");
  while (r.ok() && !r.at_end()) {
    if (out.size() >= format::kMaxSections) {
      return make_error(ErrorCode::kDataLoss, "metadata: more than {} sections", format::kMaxSections);
    }
    uint64_t at = r.file_offset();
    Section s;
    s.tag = r.u32();
    s.flags = r.u32();
    uint64_t len = r.u64();
    uint64_t stored = r.u64();
    if (!r.ok()) return tl::unexpected(r.error());
    auto name = format::tag_name(s.tag);
    if (len > r.remaining()) {
      return make_error(ErrorCode::kDataLoss, "section {} (tag {}) at offset {:#x}: length {} runs past the metadata end",
                        name, s.tag, at, len);
    }
    auto payload = r.bytes(len);
    if (checksums_enforced() && section_checksum(s.tag, s.flags, payload) != stored) {
      return make_error(ErrorCode::kDataLoss, "section {} (tag {}) at offset {:#x}: checksum mismatch", name, s.tag, at);
    }
    size_t pad = (8 - len % 8) % 8;
    r.expect_zero(pad);
    if (!r.ok()) {
      return make_error(ErrorCode::kDataLoss, "section {} (tag {}) at offset {:#x}: bad padding", name, s.tag, at);
    }
    if ((s.flags & ~format::kSectionRequired) != 0) {
      return make_error(ErrorCode::kDataLoss, "section {} (tag {}) at offset {:#x}: unknown flags {:#x}", name, s.tag,
                        at, s.flags);
    }
    s.payload.assign(payload.begin(), payload.end());
    s.file_offset = at;
    out.push_back(std::move(s));
  }
  if (!r.ok()) return tl::unexpected(r.error());
  return out;
}

}  // namespace snapvm
