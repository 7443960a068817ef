// Which guest pages changed since the last snapshot: what KVM logs of the
// guest's writes plus what the VMM's own devices mark, gathered at each
// snapshot into one bitmap per RAM region. The owner of a diff's base.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/atomic_bitmap.h"
#include "base/mapped_region.h"
#include "base/result.h"
#include "kvm/kvm.h"
#include "snapshot/diff_writer.h"

namespace snapvm {

class DirtyLog {
 public:
  // Turns on KVM's manual re-protection where it has it; one bitmap pair
  // per region of `ram` (4 KiB pages). The regions' KVM slots must then be
  // registered with KVM_MEM_LOG_DIRTY_PAGES.
  static Result<DirtyLog> enable(const kvm::Vm& vm, std::span<const MappedRegion> ram);

  // Where devices mark the pages of region `slot` they write.
  AtomicBitmap* vmm_marks(size_t slot) const { return vmm_[slot].get(); }

  // Moves KVM's log and the devices' marks into since_base() and
  // re-protects, so the next interval starts now. Only while paused.
  Status collect(const kvm::Vm& vm, std::span<const MappedRegion> ram);
  std::span<const DirtyBitmap> since_base() const { return since_base_; }
  // Whether a copy of these pages costs little enough memory to write a
  // diff from it while the guest runs: at most a quarter of guest RAM and
  // 1 GiB. Past that a diff is as big as a full snapshot.
  bool small_enough_to_copy(uint64_t ram_bytes) const;

  // A snapshot was written (or restored from): pages count from now,
  // against `path` (empty: none a native diff can use).
  void new_base(std::string path, uint64_t metadata_checksum);
  const std::string& base_path() const { return base_path_; }
  // Refuses a diff base that is not the snapshot pages count from.
  Status check_diff_base(const std::string& diff_from) const;

 private:
  bool manual_protect_ = false;  // KVM_CLEAR_DIRTY_LOG re-protects, GET does not
  std::vector<std::unique_ptr<AtomicBitmap>> vmm_;
  std::vector<DirtyBitmap> since_base_;
  std::string base_path_;       // empty: no base yet (tracking from boot)
  uint64_t base_checksum_ = 0;  // the base's metadata checksum: its identity
};

}  // namespace snapvm
