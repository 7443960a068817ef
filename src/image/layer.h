// One OCI/Docker image layer (a tar, plain, gzip or zstd) applied onto a
// root filesystem directory, as a container runtime's snapshotter does:
// entries in order, whiteouts (`.wh.NAME` removes NAME, `.wh..wh..opq`
// empties its directory of what lower layers put there).
//
// Layers are untrusted. Every path is resolved inside the root as if the
// root were `/` (openat2 RESOLVE_IN_ROOT), so a symlink in the image, to
// `/etc` or to `../../..`, can never lead a write out of it; entries that
// climb with `..`, whiteouts of `.` or `..`, device nodes, oversized
// entries and more entries or bytes than the limits allow are refused
// with one line. Nothing in the tree is ever opened for reading (a FIFO
// is made with mknod and left alone).
//
// Work stays proportional to what is charged: paths are resolved one
// component at a time from their parent (linear in depth), directories
// nest at most `max_depth` deep (mkfs.ext4 -d corrupts its heap near
// 1,000), and every entry costs the byte budget as below.
#pragma once

#include <cstdint>
#include <string>

#include "base/parallel.h"
#include "base/result.h"

namespace snapvm::image {

struct LayerLimits {
  uint64_t max_entries = 1'000'000;  // per layer
  uint64_t max_path_bytes = 4096;    // a path or a link target
  uint64_t max_depth = 512;          // directory levels below the root
};

// What an entry costs the byte budget besides its contents: each level
// its path walks (a lookup now, an inode and a directory entry in the
// filesystem), and each entry already in its directory (mkfs.ext4 -d
// scans a directory for room at every insertion: a directory of n
// entries costs it n²/2).
inline constexpr uint64_t kCostPerLevel = 256;
inline constexpr uint64_t kCostPerSibling = 32;

struct LayerStats {
  uint64_t entries = 0, files = 0, dirs = 0, symlinks = 0, hardlinks = 0, whiteouts = 0;
  uint64_t bytes = 0;  // file contents written
};

// Applies the layer in `layer_fd` (read from its start; `name` is for
// messages) onto the directory `root_fd`. File contents and entry costs
// count against `byte_budget`, which shrinks by what was charged (shared
// by an image's layers). Ownership is kept when running as root. On error
// the root is partly written: callers build into a scratch directory and
// discard it.
// `progress`, if set, hears how many bytes of the layer file were read of
// how many (compressed bytes, as stored) as the layer is applied.
Result<LayerStats> apply_layer(int layer_fd, const std::string& name, int root_fd, const LayerLimits& limits,
                               uint64_t& byte_budget, const ProgressFn& progress = {});

// The same for a layer file (opened without blocking; a regular file only).
Result<LayerStats> apply_layer(const std::string& layer_path, int root_fd, const LayerLimits& limits,
                               uint64_t& byte_budget);

}  // namespace snapvm::image
