#include "base/mapped_region.h"

namespace snapvm {

Result<MappedRegion> MappedRegion::anonymous(size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return errno_error(fmt::format("mmap {} anonymous bytes", size));
  return MappedRegion(p, size);
}

Result<MappedRegion> MappedRegion::anonymous_huge(size_t size) {
  if (size == 0) return MappedRegion();
  auto r = anonymous(size);
  if (r) ::madvise(r->data(), size, MADV_HUGEPAGE);  // a hint: failure only costs speed
  return r;
}

Result<MappedRegion> MappedRegion::anonymous_populated(size_t size) {
  if (size == 0) return MappedRegion();
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) return errno_error(fmt::format("mmap {} anonymous bytes", size));
  return MappedRegion(p, size);
}

}  // namespace snapvm
