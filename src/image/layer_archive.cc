#include "image/layer_archive.h"

#include <unistd.h>

#include <vector>

#include "image/digest.h"
#include "image/interrupt.h"

namespace snapvm::image {
namespace {

// The streams an image may use, each decoded inside libarchive. A filter
// registered with ARCHIVE_WARN would be an external program standing in
// for a library this libarchive was built without: refused, never run.
Status enable_filters(archive* a, const std::string& name) {
  for (auto* enable : {archive_read_support_filter_none, archive_read_support_filter_gzip,
                       archive_read_support_filter_zstd}) {
    if (enable(a) != ARCHIVE_OK) {
      return make_error(ErrorCode::kUnsupported, "{}: this libarchive cannot decode {} itself ({})", name,
                        kSupportedArchives, archive_error_string(a));
    }
  }
  return {};
}

Result<ArchivePtr> open_reader(int fd, const std::string& name, int (*format)(archive*)) {
  ArchivePtr a(archive_read_new(), archive_read_free);
  if (!a) return make_error(ErrorCode::kIo, "{}: out of memory", name);
  SNAPVM_CHECK_OK(enable_filters(a.get(), name));
  if (format(a.get()) != ARCHIVE_OK) return make_error(ErrorCode::kIo, "{}: {}", name, archive_error_string(a.get()));
  if (::lseek(fd, 0, SEEK_SET) != 0) return errno_error("seek " + name);
  if (archive_read_open_fd(a.get(), fd, 1 << 16) != ARCHIVE_OK) {
    return make_error(ErrorCode::kDataLoss, "{}: not {} ({})", name, kSupportedArchives, archive_error_string(a.get()));
  }
  return a;
}

}  // namespace

Result<ArchivePtr> open_tar(int fd, const std::string& name) {
  return open_reader(fd, name, archive_read_support_format_tar);
}

Result<std::string> uncompressed_digest(int fd, const std::string& name) {
  // The raw "format" hands over the decoded stream as one entry; the filters
  // are the same few as for applying the layer, so anything else hashes
  // as it is stored and fails the comparison.
  auto a = SNAPVM_TRY(open_reader(fd, name, archive_read_support_format_raw));
  archive_entry* entry = nullptr;
  if (archive_read_next_header(a.get(), &entry) != ARCHIVE_OK) {
    return make_error(ErrorCode::kDataLoss, "{}: unreadable ({})", name, archive_error_string(a.get()));
  }
  Sha256 hash;
  std::vector<char> buf(1 << 20);
  for (;;) {
    SNAPVM_CHECK_OK(check_interrupt());
    const la_ssize_t n = archive_read_data(a.get(), buf.data(), buf.size());
    if (n < 0) return make_error(ErrorCode::kDataLoss, "{}: corrupt ({})", name, archive_error_string(a.get()));
    if (n == 0) break;
    hash.update(buf.data(), static_cast<size_t>(n));
  }
  return hash.finish();
}

}  // namespace snapvm::image
