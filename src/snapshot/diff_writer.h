// Diff snapshots: a standalone snapshot made from a base file plus the pages
// that changed since the base, at a cost that follows the changed pages.
//
// The base is cloned with a reflink (FICLONE) so unchanged RAM shares extents
// with it; only dirty pages are written, and dirty pages that became zero are
// punched into holes. Where the filesystem cannot reflink (ext4, tmpfs, or a
// different filesystem) the base is copied extent by extent, skipping its
// holes, and the result is the same file, only slower to make.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "snapshot/pending_file.h"
#include "snapshot/reader.h"
#include "snapshot/writer.h"

namespace snapvm {

// One bit per page of a RAM region, least significant bit first.
class DirtyBitmap {
 public:
  DirtyBitmap() = default;
  explicit DirtyBitmap(uint64_t pages) : pages_(pages), words_((pages + 63) / 64, 0) {}

  uint64_t pages() const { return pages_; }
  void set(uint64_t page) { words_[page / 64] |= 1ull << (page % 64); }
  bool test(uint64_t page) const { return (words_[page / 64] >> (page % 64)) & 1; }
  uint64_t count() const;
  std::vector<uint64_t>& words() { return words_; }
  const std::vector<uint64_t>& words() const { return words_; }
  // Merges another bitmap of the same size (KVM's log and the VMM's own).
  void merge(const DirtyBitmap& other);

 private:
  uint64_t pages_ = 0;
  std::vector<uint64_t> words_;
};

// The dirty pages of RAM copied out while the VM is paused, so that a diff
// can be written from them after it runs again: packed in one buffer,
// region after region, each region's pages in ascending order, the order
// in which finish() reads them back with the same bitmaps. The buffer is
// allocated in one call: one page fault per page would cost as much as
// the write it spares the pause.
struct DirtyPagesCopy {
  MappedRegion pages;
  std::vector<uint64_t> region_first;  // index in `pages` of each region's first dirty page
  uint64_t bytes() const { return pages.size(); }
};
Result<DirtyPagesCopy> copy_dirty_pages(std::span<const RamSource> ram, std::span<const DirtyBitmap> dirty);

// A diff in two steps, so that a running VM is paused only for the second:
// prepare() reflinks or copies the base into the new (still temporary) file
// while the guest runs; finish() writes the dirty pages and the metadata and
// commits, while the guest is paused or from a copy of its dirty pages.
// Dropping it unfinished leaves nothing.
class DiffInProgress {
 public:
  static Result<DiffInProgress> prepare(const std::string& path, const std::string& base_path);
  // `ram` is the VM's current memory and `dirty[i]` marks the pages of
  // ram[i] that may differ from the base. The base must describe the same
  // regions. With `copy` (made by copy_dirty_pages from these bitmaps) the
  // pages are read from it, and `ram` only gives the regions' layout.
  Result<WriteStats> finish(const SnapshotContents& contents, std::span<const RamSource> ram,
                            std::span<const DirtyBitmap> dirty, const WriteOptions& options = {},
                            const DirtyPagesCopy* copy = nullptr) &&;
  const SnapshotFile& base() const { return base_; }

 private:
  DiffInProgress(SnapshotFile base, PendingFile file, bool reflinked, std::vector<std::vector<uint64_t>> tables);
  SnapshotFile base_;
  PendingFile file_;
  bool reflinked_;
  std::vector<std::vector<uint64_t>> tables_;  // the base's page checksums, per region
};

// Both steps at once.
Result<WriteStats> write_diff(const std::string& path, const std::string& base_path,
                              const SnapshotContents& contents, std::span<const RamSource> ram,
                              std::span<const DirtyBitmap> dirty, const WriteOptions& options = {});

}  // namespace snapvm
