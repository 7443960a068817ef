// Files of an image directory (an OCI layout, or what a `docker save`
// tarball unpacked to), opened inside it. The directory's content is
// untrusted: a member stored as a symlink to /root/backup.tar, or under a
// directory symlink to /root, must never bring a host file into the image.
// So every member is resolved with the image directory as `/`
// (openat2 RESOLVE_IN_ROOT), never through /proc's magic links, and is
// opened without blocking (a FIFO would hold the import forever) and
// refused unless it is a regular file.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace snapvm::image {

enum class MemberLinks {
  kRefused,     // a symlink anywhere on the way is refused
  kInsideOnly,  // symlinks stored in the image resolve inside it (docker
                // save wrote a repeated layer as a link to its first copy)
};

// `path` (relative, no `..`) in the image directory `dir_fd`, opened for
// reading. `what` names it in messages ("layer 2", "manifest.json").
Result<UniqueFd> open_member(int dir_fd, const std::string& path, MemberLinks links, const std::string& what);

// The whole of a small member (metadata): refused beyond `max_bytes`.
Result<std::string> read_member(int fd, uint64_t max_bytes, const std::string& what);

}  // namespace snapvm::image
