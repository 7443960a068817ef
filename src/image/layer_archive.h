// libarchive, opened on an untrusted image archive (a layer, or a `docker
// save` tarball). Only what images use is enabled: the tar formats, and
// plain, gzip or zstd streams decoded by libarchive itself. libarchive's
// other filters run external programs on the data (`lrzip -d`, `lzop -d`,
// ...) or decode formats no image needs; an archive they would read is
// refused as not a tar.
#pragma once

#include <archive.h>

#include <memory>
#include <string>

#include "base/result.h"

namespace snapvm::image {

using ArchivePtr = std::unique_ptr<archive, int (*)(archive*)>;

// What a refusal says the archive may be.
inline constexpr const char* kSupportedArchives = "a tar, plain, gzip or zstd";

// A reader of the tar in `fd` from its start. `name` is for messages.
Result<ArchivePtr> open_tar(int fd, const std::string& name);

// "sha256:<64 hex>" of the uncompressed stream in `fd` (gzip and zstd
// decoded, nothing else): a docker layer's diff_id.
Result<std::string> uncompressed_digest(int fd, const std::string& name);

}  // namespace snapvm::image
