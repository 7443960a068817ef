// One OCI/Docker image layer (a tar, plain, gzip or zstd) applied onto a
// root filesystem directory, as a container runtime's snapshotter does:
// entries in order, whiteouts (`.wh.NAME` removes NAME, `.wh..wh..opq`
// empties its directory of what lower layers put there).
//
// Layers are untrusted. Every path is resolved inside the root as if the
// root were `/` (openat2 RESOLVE_IN_ROOT), so a symlink in the image, to
// `/etc` or to `../../..`, can never lead a write out of it; entries that
// climb with `..`, device nodes, oversized entries and more entries or
// bytes than the limits allow are refused with one line.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"

namespace snapvm::image {

struct LayerLimits {
  uint64_t max_entries = 1'000'000;  // per layer
  uint64_t max_path_bytes = 4096;    // a path or a link target
};

struct LayerStats {
  uint64_t entries = 0, files = 0, dirs = 0, symlinks = 0, hardlinks = 0, whiteouts = 0;
  uint64_t bytes = 0;  // file contents written
};

// Applies the layer at `layer_path` onto the directory `root_fd`. File
// contents count against `byte_budget`, which shrinks by what was
// written (shared by an image's layers). Ownership is kept when running
// as root. On error the root is partly written: callers build into a
// scratch directory and discard it.
Result<LayerStats> apply_layer(const std::string& layer_path, int root_fd, const LayerLimits& limits,
                               uint64_t& byte_budget);

}  // namespace snapvm::image
