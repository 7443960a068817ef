// libFuzzer target: arbitrary bytes as a snapshot file. Opening, decoding the
// state and verifying RAM must return an error or succeed; never crash, hang,
// or allocate more than the input justifies.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "snapshot/reader.h"
#include "snapshot/verify.h"
#include "state/snapshot_state.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int fd = ::memfd_create("fuzz-snapshot", MFD_CLOEXEC);
  if (fd < 0) return 0;
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  auto file = snapvm::SnapshotFile::open_fd(snapvm::UniqueFd(fd), "fuzz");
  if (!file) return 0;
  (void)snapvm::state::load_state(*file);
  (void)snapvm::verify_ram(*file);
  for (size_t i = 0; i < file->ram_regions().size(); ++i) {
    auto map = file->map_ram_cow(i);
    if (map && map->size() > 0) {
      volatile uint8_t last = map->data()[map->size() - 1];  // must not SIGBUS
      (void)last;
    }
  }
  return 0;
}
