// The local image store: `snapvm image import` turns an image (an OCI
// layout directory, or a `docker save` / `skopeo copy docker-archive:`
// tarball) into a root filesystem image (ext4, built without mounting by
// mkfs.ext4 -d) plus the image's run settings, under STORE/NAME/:
//
//   rootfs.ext4   the layers applied in order, whiteouts honoured
//   image.json    name, digest, architecture, entrypoint, cmd, env,
//                 working dir, user, exposed ports, sizes
//
// An import builds in a scratch directory inside the store (0700:
// scratch_dir.h) and renames it into place at the end, so a refused,
// failed or interrupted import leaves the store as it was; importing the
// same image (same digest, its layers verified) under the same name again
// reuses what is there. The store is made 0700 and each image's directory
// and files are the importer's alone (0700, 0600) unless `shared`.
// The store must be writable by its owner only (root or the importer):
// the import refuses one that other users can write.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/result.h"
#include "image/catalog.h"
#include "image/oci.h"

namespace snapvm::image {

struct ImportOptions {
  std::string store;                  // the store's directory
  uint64_t max_bytes = 8ull << 30;    // file contents and entry costs (layer.h) of the whole image
                                      // (and of a tarball's unpacking)
  bool shared = false;                // the image readable by every user: 0755 directory, 0644 files
                                      // (and a store this import makes, 0755)
  std::function<void(const std::string&)> progress;  // one line per step, if set
};

struct ImportResult {
  std::string name, digest, rootfs;
  uint64_t content_bytes = 0, rootfs_bytes = 0;
  size_t layers = 0;
  bool reused = false;
};

Result<ImportResult> import_image(const std::string& source, const std::string& name, const ImportOptions& options);

}  // namespace snapvm::image
