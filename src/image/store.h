// The local image store: `snapvm image import` turns an image (an OCI
// layout directory, or a `docker save` / `skopeo copy docker-archive:`
// tarball) into a root filesystem image (ext4, built without mounting by
// mkfs.ext4 -d) plus the image's run settings, under STORE/NAME/:
//
//   rootfs.ext4   the layers applied in order, whiteouts honoured
//   image.json    name, digest, architecture, os, created, layer digests,
//                 entrypoint, cmd, env, working dir, user, exposed ports,
//                 sizes
//
// An import builds in a scratch directory inside the store (0700:
// scratch_dir.h) and renames it into place at the end, so a refused,
// failed or interrupted import leaves the store as it was; importing the
// same image (same digest, its layers verified) under the same name again
// reuses what is there. The store is made 0700 and each image's directory
// and files are the importer's alone (0700, 0600) unless `shared`.
// The store must be writable by its owner only (root or the importer):
// the import refuses one that other users can write.
//
// The source is named as source_ref.h says (oci:DIR[:TAG],
// docker-archive:PATH[:TAG], or a path). An image whose config names
// another architecture than this host's is refused unless allowed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "image/catalog.h"
#include "image/oci.h"

namespace snapvm::image {

struct ImportOptions {
  std::string store;                  // the store's directory
  uint64_t max_bytes = 8ull << 30;    // file contents and entry costs (layer.h) of the whole image
                                      // (and of a tarball's unpacking)
  bool shared = false;                // the image readable by every user: 0755 directory, 0644 files
                                      // (and a store this import makes, 0755)
  bool allow_other_arch = false;      // import an image built for another architecture
  std::function<void(const std::string&)> progress;  // one line per step, if set
  // How far a long step is, in bytes, if set: unpacking a tarball, applying
  // a layer (bytes of the layer file read), building rootfs.ext4 (bytes of
  // it written, of an estimate that the last call makes exact). `step`
  // names it ("layer 2/3"); the step's last call has done == total.
  std::function<void(const std::string& step, uint64_t done, uint64_t total)> bytes;
};

struct ImportResult {
  std::string name, digest, rootfs;
  uint64_t content_bytes = 0, rootfs_bytes = 0;
  size_t layers = 0;
  bool reused = false;
};

// An empty `name` is the one default_image_name (source_ref.h) gives.
Result<ImportResult> import_image(const std::string& source, const std::string& name, const ImportOptions& options);

// The store's directory, made if absent (0700, or 0755 when `shared`), and
// refused if other users could change what is in it.
Result<UniqueFd> open_store(const std::string& store, bool shared);

}  // namespace snapvm::image
