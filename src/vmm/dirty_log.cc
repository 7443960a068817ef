#include "vmm/dirty_log.h"

#include <unistd.h>

#include <algorithm>

#include "devices/guest_memory.h"
#include "snapshot/reader.h"

namespace snapvm {

Result<DirtyLog> DirtyLog::enable(const kvm::Vm& vm, std::span<const MappedRegion> ram) {
  bool whole_pages = ::sysconf(_SC_PAGESIZE) % GuestMemory::kDirtyPageBytes == 0;
  for (const auto& r : ram) whole_pages = whole_pages && r.size() % GuestMemory::kDirtyPageBytes == 0;
  if (!whole_pages) {
    return make_error(ErrorCode::kUnsupported, "dirty tracking needs RAM and host pages in multiples of 4 KiB");
  }
  DirtyLog d;
  d.manual_protect_ = SNAPVM_TRY(vm.enable_manual_dirty_protect());
  for (const auto& r : ram) {
    d.vmm_.push_back(std::make_unique<AtomicBitmap>(r.size() / GuestMemory::kDirtyPageBytes));
    d.since_base_.emplace_back(r.size() / GuestMemory::kDirtyPageBytes);
  }
  return d;
}

Status DirtyLog::collect(const kvm::Vm& vm, std::span<const MappedRegion> ram) {
  const uint64_t host_page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  for (uint32_t slot = 0; slot < ram.size(); ++slot) {
    const uint64_t kvm_pages = ram[slot].size() / host_page;
    std::vector<uint64_t> log((kvm_pages + 63) / 64, 0);
    SNAPVM_CHECK_OK(vm.get_dirty_log(slot, log));
    if (manual_protect_) SNAPVM_CHECK_OK(vm.clear_dirty_log(slot, log, kvm_pages));
    DirtyBitmap& since = since_base_[slot];
    auto& words = since.words();
    if (host_page == GuestMemory::kDirtyPageBytes) {
      for (size_t i = 0; i < log.size() && i < words.size(); ++i) words[i] |= log[i];
    } else {  // a larger host page covers several 4 KiB pages
      const uint64_t per = host_page / GuestMemory::kDirtyPageBytes;
      for (uint64_t p = 0; p < kvm_pages; ++p) {
        if ((log[p / 64] >> (p % 64)) & 1) {
          for (uint64_t q = p * per; q < (p + 1) * per; ++q) since.set(q);
        }
      }
    }
    vmm_[slot]->drain_into(words);
  }
  return {};
}

bool DirtyLog::small_enough_to_copy(uint64_t ram_bytes) const {
  uint64_t dirty_bytes = 0;
  for (const auto& p : since_base_) dirty_bytes += p.count() * GuestMemory::kDirtyPageBytes;
  return dirty_bytes <= std::min<uint64_t>(ram_bytes / 4, uint64_t{1} << 30);
}

void DirtyLog::new_base(std::string path, uint64_t metadata_checksum) {
  base_path_ = std::move(path);
  base_checksum_ = metadata_checksum;
  for (auto& since : since_base_) std::fill(since.words().begin(), since.words().end(), 0);
}

Status DirtyLog::check_diff_base(const std::string& diff_from) const {
  if (base_path_.empty()) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "this VM has no snapshot to diff against yet: take a full snapshot first");
  }
  auto b = SnapshotFile::open(diff_from);
  if (!b) return tl::unexpected(std::move(b.error()).context("diff base"));
  if (b->header().metadata_checksum != base_checksum_) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "{} is not the snapshot this VM's dirty pages count from ({}); diff against that one", diff_from,
                      base_path_);
  }
  return {};
}

}  // namespace snapvm
