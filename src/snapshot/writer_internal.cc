#include "snapshot/writer_internal.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/byte_codec.h"
#include "base/checksum.h"
#include "base/file_io.h"
#include "snapshot/header.h"

namespace snapvm::internal {

Status RunWriter::add(uint64_t index, const uint8_t* src) {
  if (count_ > 0 && index == first_ + count_ && src == src_ + count_ * format::kPageSize && count_ < kMaxRunPages) {
    ++count_;
    return {};
  }
  SNAPVM_CHECK_OK(flush());
  first_ = index;
  src_ = src;
  count_ = 1;
  return {};
}

Status RunWriter::flush() {
  if (count_ == 0) return {};
  uint64_t off = base_ + first_ * format::kPageSize;
  uint64_t len = count_ * format::kPageSize;
  auto s = pwrite_all(fd_, {src_, len}, off);
  count_ = 0;
  if (!s) return tl::unexpected(std::move(s.error()).context("write RAM"));
  // Start writeback now rather than at the final fsync: disk I/O overlaps the
  // scan of the rest of RAM, and dirty pages never pile up to the kernel's
  // throttling limits (a snapshot can be as large as the host's free memory).
  ::sync_file_range(fd_, static_cast<off_t>(off), static_cast<off_t>(len), SYNC_FILE_RANGE_WRITE);
  return {};
}

Result<uint64_t> finish_file(int fd, format::Arch arch, uint64_t writer_flags, std::vector<RamRegion> regions,
                             uint64_t metadata_offset, std::span<const std::vector<uint64_t>> tables,
                             std::span<const Section> sections) {
  for (size_t i = 0; i < regions.size(); ++i) {
    ByteWriter w;
    for (uint64_t c : tables[i]) w.u64(c);
    regions[i].table_checksum = checksum64(w.data());
    auto s = pwrite_all(fd, w.data(), regions[i].table_offset);
    if (!s) return tl::unexpected(std::move(s.error()).context("write checksum table"));
  }

  std::vector<Section> all;
  all.reserve(sections.size() + 1);
  all.push_back(encode_ram_layout(regions));
  all.insert(all.end(), sections.begin(), sections.end());
  auto metadata = encode_sections(all);
  auto s = pwrite_all(fd, metadata, metadata_offset);
  if (!s) return tl::unexpected(std::move(s.error()).context("write metadata"));

  Header h;
  h.arch = arch;
  h.flags = writer_flags;
  h.metadata_offset = metadata_offset;
  h.metadata_length = metadata.size();
  h.metadata_checksum = checksum64(metadata);
  h.file_size = metadata_offset + metadata.size();
  // A diff starts from a clone of a longer file: cut whatever lies beyond.
  if (::ftruncate(fd, static_cast<off_t>(h.file_size)) != 0) return errno_error("truncate snapshot");
  s = pwrite_all(fd, encode_header(h), 0);
  if (!s) return tl::unexpected(std::move(s.error()).context("write header"));
  return h.file_size;
}

Status check_arch(const SnapshotContents& contents) {
  if (!format::arch_known(static_cast<uint32_t>(contents.arch))) {
    return make_error(ErrorCode::kInvalidArgument, "snapshot contents name no architecture (arch {})",
                      static_cast<uint32_t>(contents.arch));
  }
  return {};
}

Status check_sources(std::span<const RamSource> ram) {
  for (const auto& r : ram) {
    if (r.bytes.size() % format::kPageSize != 0 || r.bytes.empty()) {
      return make_error(ErrorCode::kInvalidArgument, "RAM at {:#x}: size {} is not a positive multiple of {}", r.gpa,
                        r.bytes.size(), format::kPageSize);
    }
  }
  return {};
}

}  // namespace snapvm::internal
