#include "snapshot/raw_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>

#include "base/checksum.h"
#include "base/file_io.h"
#include "snapshot/pending_file.h"
#include "snapshot/writer_internal.h"

namespace snapvm {

Result<std::vector<MappedRegion>> map_raw_memory(const std::string& path, std::span<const RawRegion> regions) {
  UniqueFd fd = SNAPVM_TRY(open_regular_file(path, O_RDONLY, "memory file"));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_error("memory file " + path);
  const uint64_t host_page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  std::vector<MappedRegion> out;
  for (const auto& r : regions) {
    if (static_cast<uint64_t>(st.st_size) < r.file_offset + r.size) {
      return make_error(ErrorCode::kDataLoss, "memory file {}: {} bytes, the snapshot's RAM needs {}", path, st.st_size,
                        r.file_offset + r.size);
    }
    if (r.file_offset % host_page != 0) {
      return make_error(ErrorCode::kUnsupported, "memory file {}: offset {:#x} is not aligned to the host page size",
                        path, r.file_offset);
    }
    void* p = ::mmap(nullptr, r.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd.get(),
                     static_cast<off_t>(r.file_offset));
    if (p == MAP_FAILED) return errno_error("memory file " + path + ": mmap");
    out.emplace_back(p, r.size);
  }
  return out;
}

Result<WriteStats> write_raw_memory(const std::string& path, std::span<const RamSource> ram,
                                    std::span<const uint64_t> offsets, std::span<const DirtyBitmap> dirty,
                                    const WriteOptions& options) {
  if (ram.size() != offsets.size()) return make_error(ErrorCode::kInvalidArgument, "raw memory: one offset per region");
  SNAPVM_CHECK_OK(internal::check_sources(ram));
  const bool diff = !dirty.empty();
  if (diff && dirty.size() != ram.size()) {
    return make_error(ErrorCode::kInvalidArgument, "raw memory: one dirty bitmap per region");
  }
  for (size_t i = 0; diff && i < ram.size(); ++i) {
    if (dirty[i].pages() != ram[i].bytes.size() / format::kPageSize) {
      return make_error(ErrorCode::kInvalidArgument, "raw memory: region {}'s dirty bitmap has the wrong size", i);
    }
  }
  uint64_t end = 0;
  for (size_t i = 0; i < ram.size(); ++i) {
    if (offsets[i] % format::kPageSize != 0 || offsets[i] < end) {
      return make_error(ErrorCode::kInvalidArgument, "raw memory: region {} at a bad or overlapping offset", i);
    }
    end = offsets[i] + ram[i].bytes.size();
  }
  auto pending = SNAPVM_TRY(PendingFile::create(path));
  if (::ftruncate(pending.fd(), static_cast<off_t>(end)) != 0) return errno_error("raw memory: size " + path);

  // Work units of 8 MiB across all regions.
  struct Unit {
    size_t region;
    uint64_t first_page, pages;
  };
  std::vector<Unit> units;
  for (size_t i = 0; i < ram.size(); ++i) {
    uint64_t pages = ram[i].bytes.size() / format::kPageSize;
    for (uint64_t p = 0; p < pages; p += internal::kPagesPerUnit) {
      units.push_back({i, p, std::min(internal::kPagesPerUnit, pages - p)});
    }
  }
  std::atomic<uint64_t> data_pages{0};
  const int fd = pending.fd();
  SNAPVM_CHECK_OK(parallel_for(
      units.size(), options.threads,
      [&](uint64_t u) -> Status {
        const Unit& unit = units[u];
        const uint8_t* base = ram[unit.region].bytes.data();
        internal::RunWriter out(fd, offsets[unit.region]);
        uint64_t here = 0;
        for (uint64_t p = unit.first_page; p < unit.first_page + unit.pages; ++p) {
          const uint8_t* page = base + p * format::kPageSize;
          if (diff ? !dirty[unit.region].test(p) : is_all_zero({page, format::kPageSize})) continue;
          SNAPVM_CHECK_OK(out.add(p, page));
          ++here;
        }
        SNAPVM_CHECK_OK(out.flush());
        data_pages += here;
        return {};
      },
      options.progress));
  SNAPVM_CHECK_OK(pending.commit());
  WriteStats stats;
  for (const auto& r : ram) stats.ram_bytes += r.bytes.size();
  stats.data_bytes = data_pages.load() * format::kPageSize;
  stats.written_bytes = stats.data_bytes;
  stats.zero_bytes = diff ? 0 : stats.ram_bytes - stats.data_bytes;
  stats.file_bytes = end;
  return stats;
}

Result<RebaseStats> rebase_raw_memory(const std::string& base_path, const std::string& diff_path) {
  UniqueFd diff = SNAPVM_TRY(open_regular_file(diff_path, O_RDONLY, "diff memory file"));
  UniqueFd base = SNAPVM_TRY(open_regular_file(base_path, O_RDWR, "base memory file"));
  struct stat ds {}, bs {};
  if (::fstat(diff.get(), &ds) != 0 || ::fstat(base.get(), &bs) != 0) return errno_error("rebase: stat");
  if (ds.st_dev == bs.st_dev && ds.st_ino == bs.st_ino) {
    return make_error(ErrorCode::kInvalidArgument, "rebase: the base and the diff are the same file");
  }
  if (ds.st_size > bs.st_size) {
    return make_error(ErrorCode::kInvalidArgument, "rebase: the diff ({} bytes) is longer than the base ({} bytes)",
                      ds.st_size, bs.st_size);
  }
  RebaseStats stats;
  off_t at = 0;
  const off_t size = ds.st_size;
  while (at < size) {
    off_t data = ::lseek(diff.get(), at, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      return errno_error("rebase: SEEK_DATA in " + diff_path);
    }
    off_t hole = ::lseek(diff.get(), data, SEEK_HOLE);
    if (hole < 0) return errno_error("rebase: SEEK_HOLE in " + diff_path);
    ++stats.extents;
    for (off_t pos = data; pos < hole;) {
      // copy_file_range stays in the kernel (and reflinks where it can).
      loff_t in = pos, out = pos;
      ssize_t n = ::copy_file_range(diff.get(), &in, base.get(), &out, static_cast<size_t>(hole - pos), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("rebase: copy into " + base_path);
      if (n == 0) return make_error(ErrorCode::kDataLoss, "rebase: {} shrank while being read", diff_path);
      pos += n;
      stats.data_bytes += static_cast<uint64_t>(n);
    }
    at = hole;
  }
  if (::fsync(base.get()) != 0) return errno_error("rebase: fsync " + base_path);
  return stats;
}

}  // namespace snapvm
