#include "snapshot/header.h"

#include <algorithm>

#include "base/byte_codec.h"
#include "base/checksum.h"

namespace snapvm {

// Layout (little-endian):
//   0 magic[8]  8 u16 major  10 u16 minor  12 u32 arch  16 u64 flags
//  24 u32 header_size  28 u32 page_size  32 u64 metadata_offset
//  40 u64 metadata_length  48 u64 metadata_checksum  56 u64 file_size
//  64..120 reserved (zero)  120 u64 checksum of bytes 0..120
std::vector<uint8_t> encode_header(const Header& h) {
  ByteWriter w;
  w.bytes(format::kMagic);
  w.u16(h.major);
  w.u16(h.minor);
  w.u32(static_cast<uint32_t>(h.arch));
  w.u64(h.flags);
  w.u32(format::kHeaderSize);
  w.u32(h.page_size);
  w.u64(h.metadata_offset);
  w.u64(h.metadata_length);
  w.u64(h.metadata_checksum);
  w.u64(h.file_size);
  while (w.size() < format::kHeaderChecksumOffset) w.u8(0);
  w.u64(checksum64(w.data()));
  return w.take();
}

Result<Header> decode_header(std::span<const uint8_t> bytes) {
  if (bytes.size() < format::kHeaderSize) {
    return make_error(ErrorCode::kDataLoss, "header: file is {} bytes, shorter than the {}-byte header",
                      bytes.size(), format::kHeaderSize);
  }
  bytes = bytes.first(format::kHeaderSize);
  if (!std::equal(format::kMagic.begin(), format::kMagic.end(), bytes.begin())) {
    return make_error(ErrorCode::kDataLoss, "header: bad magic (not a snapvm snapshot)");
  }
  ByteReader r(bytes, 0, "header");
  r.bytes(format::kMagic.size());
  Header h;
  h.major = r.u16();
  h.minor = r.u16();
  uint32_t arch = r.u32();
  h.flags = r.u64();
  uint32_t header_size = r.u32();
  h.page_size = r.u32();
  h.metadata_offset = r.u64();
  h.metadata_length = r.u64();
  h.metadata_checksum = r.u64();
  h.file_size = r.u64();
  r.expect_zero(format::kHeaderChecksumOffset - r.position());
  uint64_t stored = r.u64();
  if (!r.ok()) return tl::unexpected(r.error());

  // Version first: a future major may move the checksum, and "unsupported
  // version 2.0" is the useful message then, not "bad checksum".
  if (h.major != format::kMajor) {
    return make_error(ErrorCode::kUnsupported, "header: format version {}.{} is not readable by this build (reads {}.x)",
                      h.major, h.minor, format::kMajor);
  }
  if (checksums_enforced() && checksum64(bytes.first(format::kHeaderChecksumOffset)) != stored) {
    return make_error(ErrorCode::kDataLoss, "header at offset 0x0: checksum mismatch");
  }
  if (!format::arch_known(arch)) {
    return make_error(ErrorCode::kUnsupported, "header: unknown architecture {}", arch);
  }
  h.arch = static_cast<format::Arch>(arch);
  if (header_size != format::kHeaderSize) {
    return make_error(ErrorCode::kDataLoss, "header: header size {} (expected {})", header_size, format::kHeaderSize);
  }
  uint64_t unknown = h.flags & format::kFlagsIncompatibleMask & ~format::kFlagsIncompatibleKnown;
  if (unknown != 0) {
    return make_error(ErrorCode::kUnsupported, "header: incompatible feature flags {:#x} are not supported", unknown);
  }
  if (h.page_size != format::kPageSize) {
    return make_error(ErrorCode::kUnsupported, "header: page size {} (this build reads {})", h.page_size, format::kPageSize);
  }
  if (h.metadata_length > format::kMaxMetadataBytes) {
    return make_error(ErrorCode::kDataLoss, "header: metadata length {} exceeds limit {}", h.metadata_length,
                      format::kMaxMetadataBytes);
  }
  if (h.metadata_offset < format::kHeaderSize || h.metadata_offset % format::kBlockAlign != 0 ||
      h.metadata_offset > h.file_size || h.file_size - h.metadata_offset != h.metadata_length) {
    return make_error(ErrorCode::kDataLoss,
                      "header: metadata at {:#x} length {} does not end the {}-byte file", h.metadata_offset,
                      h.metadata_length, h.file_size);
  }
  return h;
}

}  // namespace snapvm
