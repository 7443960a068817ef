#include "snapshot/reader.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <chrono>

#include "base/byte_codec.h"
#include "base/checksum.h"
#include "base/file_io.h"

namespace snapvm {

Result<SnapshotFile> SnapshotFile::open(const std::string& path) {
  auto fd = open_regular_file(path, O_RDONLY, "snapshot");
  if (!fd) return tl::unexpected(std::move(fd.error()));
  auto f = open_fd(std::move(*fd), path);
  if (!f) return tl::unexpected(std::move(f.error()).context(path));
  return f;
}

Result<SnapshotFile> SnapshotFile::open_fd(UniqueFd fd, std::string name) {
  SnapshotFile f;
  f.name_ = std::move(name);
  f.fd_ = std::move(fd);
  uint64_t size = SNAPVM_TRY(file_size(f.fd_.get()));

  std::vector<uint8_t> hbytes(std::min<uint64_t>(size, format::kHeaderSize));
  SNAPVM_CHECK_OK(pread_exact(f.fd_.get(), hbytes, 0));
  f.header_ = SNAPVM_TRY(decode_header(hbytes));
  const Header& h = f.header_;
  if (size < h.file_size) {
    return make_error(ErrorCode::kDataLoss, "truncated: file is {} bytes, its header says {}", size, h.file_size);
  }
  if (size > h.file_size) {
    return make_error(ErrorCode::kDataLoss, "file is {} bytes, its header says {}: trailing data", size, h.file_size);
  }

  // Bounded by the header check (kMaxMetadataBytes) and by the real file size.
  std::vector<uint8_t> meta(h.metadata_length);
  SNAPVM_CHECK_OK(pread_exact(f.fd_.get(), meta, h.metadata_offset));
  bool area_ok = !checksums_enforced() || checksum64(meta) == h.metadata_checksum;
  auto sections = decode_sections(meta, h.metadata_offset);
  if (!sections) return tl::unexpected(std::move(sections.error()));
  if (!area_ok) {
    // Every section checked out, so the damage is outside them.
    return make_error(ErrorCode::kDataLoss, "metadata area at offset {:#x}: checksum mismatch", h.metadata_offset);
  }

  const Section* layout = nullptr;
  for (auto& s : *sections) {
    if (format::tag_name(s.tag) == "unknown") {
      if (s.required()) {
        return make_error(ErrorCode::kUnsupported,
                          "section with tag {} at offset {:#x} is required but unknown to this build "
                          "(written by a newer snapvm?)",
                          s.tag, s.file_offset);
      }
      ++f.skipped_;
      continue;
    }
    if (s.tag == static_cast<uint32_t>(format::Tag::kRamLayout)) {
      if (layout != nullptr) {
        return make_error(ErrorCode::kDataLoss, "section ram-layout at offset {:#x}: appears twice", s.file_offset);
      }
      layout = &s;
      continue;
    }
    f.sections_.push_back(std::move(s));
  }
  if (layout == nullptr) return make_error(ErrorCode::kDataLoss, "metadata: no ram-layout section");
  f.regions_ = SNAPVM_TRY(decode_ram_layout(*layout, h.metadata_offset));
  return f;
}

uint64_t SnapshotFile::ram_bytes() const {
  uint64_t n = 0;
  for (const auto& r : regions_) n += r.size;
  return n;
}

std::vector<const Section*> SnapshotFile::find_all(format::Tag tag) const {
  std::vector<const Section*> out;
  for (const auto& s : sections_) {
    if (s.tag == static_cast<uint32_t>(tag)) out.push_back(&s);
  }
  return out;
}

const Section* SnapshotFile::find(format::Tag tag) const {
  auto all = find_all(tag);
  return all.empty() ? nullptr : all.front();
}

Result<MappedRegion> SnapshotFile::map_ram_cow(size_t index, void* fixed_addr) const {
  if (index >= regions_.size()) {
    return make_error(ErrorCode::kNotFound, "{}: no RAM region {}", name_, index);
  }
  const RamRegion& r = regions_[index];
  // The file may have changed since open: check again right before mapping.
  uint64_t size = SNAPVM_TRY(file_size(fd_.get()));
  if (size < r.file_end()) {
    return make_error(ErrorCode::kDataLoss, "{}: RAM region {} needs the file up to {:#x}, but it ends at {:#x}", name_,
                      index, r.file_end(), size);
  }
  long host_page = ::sysconf(_SC_PAGESIZE);
  if (r.file_offset % static_cast<uint64_t>(host_page) != 0) {
    return make_error(ErrorCode::kUnsupported, "{}: RAM offset {:#x} is not aligned to the host page size {}", name_,
                      r.file_offset, host_page);
  }
  int flags = MAP_PRIVATE | MAP_NORESERVE | (fixed_addr != nullptr ? MAP_FIXED : 0);
  void* p = ::mmap(fixed_addr, r.size, PROT_READ | PROT_WRITE, flags, fd_.get(), static_cast<off_t>(r.file_offset));
  if (p == MAP_FAILED) return errno_error(fmt::format("{}: mmap RAM region {}", name_, index));
  MappedRegion region(p, r.size);
  struct statfs fs {};
  if (::fstatfs(fd_.get(), &fs) == 0 && fs.f_type == TMPFS_MAGIC) cover_holes(region, r);
  return region;
}

// On tmpfs every hole a mapping reads is allocated in the tmpfs (counted
// against its size), and a full tmpfs answers the next fault with SIGBUS.
// Holes are zero pages: map anonymous zero memory over the large ones
// instead, so a restored guest reading its free memory costs nothing.
// Bounded by time, not by count: on tmpfs SEEK_HOLE/SEEK_DATA walk the page
// cache, so their cost grows with the data (a bound of 512 seeks cost 34-56
// ms of a 60 ms restore in the emulated test host). No new seek starts
// after 1 ms (one seek there can take ~10 ms: restore on tmpfs costs about
// 12 ms more, the same at 256 MiB and 2 GiB); holes not reached stay
// file-backed, as before. The first hole is always looked for, however
// slow the seeks: on a loaded host (tests under ASan beside other tests)
// the deadline could pass before the first seek returned, and a large hole
// (a guest's free memory is usually one) would stay file-backed.
// Snapshots on disk filesystems skip all this.
void SnapshotFile::cover_holes(MappedRegion& region, const RamRegion& r) const {
  constexpr uint64_t kAlign = 2 << 20;
  constexpr int kMaxHoleMappings = 256;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
  uint64_t at = r.file_offset;
  int mappings = 0;
  for (bool first = true; at < r.file_end() && mappings < kMaxHoleMappings &&
                         (first || std::chrono::steady_clock::now() < deadline);
       first = false) {
    off_t hole = ::lseek(fd_.get(), static_cast<off_t>(at), SEEK_HOLE);
    if (hole < 0 || static_cast<uint64_t>(hole) >= r.file_end()) break;
    off_t data = ::lseek(fd_.get(), hole, SEEK_DATA);
    uint64_t hole_end = data < 0 ? r.file_end() : std::min<uint64_t>(static_cast<uint64_t>(data), r.file_end());
    // Guest-address alignment: offsets within the region.
    uint64_t from = (static_cast<uint64_t>(hole) - r.file_offset + kAlign - 1) / kAlign * kAlign;
    uint64_t to = (hole_end - r.file_offset) / kAlign * kAlign;
    if (to > from) {
      void* want = region.data() + from;
      void* got = ::mmap(want, to - from, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
                         -1, 0);
      if (got != want) break;  // the file mapping stays where this failed: still correct
      ++mappings;
    }
    at = hole_end;
  }
}

Status SnapshotFile::read_ram(size_t index, std::span<uint8_t> out) const {
  if (index >= regions_.size()) return make_error(ErrorCode::kNotFound, "{}: no RAM region {}", name_, index);
  const RamRegion& r = regions_[index];
  if (out.size() != r.size) {
    return make_error(ErrorCode::kInvalidArgument, "{}: RAM region {} has {} bytes, buffer has {}", name_, index,
                      r.size, out.size());
  }
  auto s = pread_exact(fd_.get(), out, r.file_offset);
  if (!s) return tl::unexpected(std::move(s.error()).context(fmt::format("{}: RAM region {}", name_, index)));
  return {};
}

Result<std::vector<uint64_t>> SnapshotFile::read_page_table(size_t index) const {
  if (index >= regions_.size()) return make_error(ErrorCode::kNotFound, "{}: no RAM region {}", name_, index);
  const RamRegion& r = regions_[index];
  std::vector<uint8_t> raw(r.table_bytes());
  SNAPVM_CHECK_OK(pread_exact(fd_.get(), raw, r.table_offset));
  if (checksums_enforced() && checksum64(raw) != r.table_checksum) {
    return make_error(ErrorCode::kDataLoss, "{}: checksum table of RAM region {} at offset {:#x}: checksum mismatch",
                      name_, index, r.table_offset);
  }
  ByteReader rd(raw, r.table_offset, "checksum table");
  std::vector<uint64_t> table(r.pages());
  for (auto& c : table) c = rd.u64();
  return table;
}

}  // namespace snapvm
