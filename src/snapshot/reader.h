// Reading snapshot files. Opening reads only the header and the metadata
// area: no RAM, whatever the RAM size. RAM is then mapped copy-on-write, read
// whole, or checked page by page (verify.h).
//
// Every field is untrusted: lengths and counts are bounded before anything is
// allocated, and every error names what is wrong and at which offset.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/mapped_region.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "snapshot/header.h"
#include "snapshot/ram_layout.h"
#include "snapshot/section.h"

namespace snapvm {

class SnapshotFile {
 public:
  static Result<SnapshotFile> open(const std::string& path);
  static Result<SnapshotFile> open_fd(UniqueFd fd, std::string name);

  const std::string& name() const { return name_; }
  const Header& header() const { return header_; }
  const std::vector<RamRegion>& ram_regions() const { return regions_; }
  uint64_t ram_bytes() const;

  // The state sections (the RAM layout excluded), in file order. Unknown
  // optional sections have been skipped; unknown required ones refused.
  const std::vector<Section>& sections() const { return sections_; }
  std::vector<const Section*> find_all(format::Tag tag) const;
  const Section* find(format::Tag tag) const;
  // How many optional sections this build did not know and skipped.
  size_t skipped_sections() const { return skipped_; }

  // Maps region `index` MAP_PRIVATE from the file: reads fault pages in from
  // the page cache (shared between clones), writes stay private. With
  // `fixed_addr` the mapping replaces whatever is there (guest memory slots).
  // The file is checked to still cover the region first, so a truncated file
  // is an error here, not a SIGBUS inside the guest later.
  Result<MappedRegion> map_ram_cow(size_t index, void* fixed_addr = nullptr) const;

  // Reads region `index` whole into `out` (size must match).
  Status read_ram(size_t index, std::span<uint8_t> out) const;

  // Reads a region's page checksum table and checks its own checksum.
  Result<std::vector<uint64_t>> read_page_table(size_t index) const;

  int fd() const { return fd_.get(); }

 private:
  SnapshotFile() = default;
  void cover_holes(MappedRegion& region, const RamRegion& r) const;

  std::string name_;
  UniqueFd fd_;
  Header header_;
  std::vector<RamRegion> regions_;
  std::vector<Section> sections_;
  size_t skipped_ = 0;
};

}  // namespace snapvm
