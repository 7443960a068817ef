// Reading a container image from disk: an OCI image layout directory
// (oci-layout, index.json, blobs/sha256/...) or the directory a
// `docker save` tarball unpacks to (manifest.json naming a config and
// layer tars). Every blob named by digest is checked against it before
// use; sizes and counts are bounded, since images come from anywhere.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "image/catalog.h"

namespace snapvm::image {

struct ImageSource {
  // Names the image's content: the manifest's digest (OCI), the config's
  // (docker archive, whose manifest.json is not content-addressed).
  std::string digest;
  std::vector<std::string> layers;  // paths of the layer blobs, lowest first
  RunConfig config;
  std::string architecture;  // as the config says ("amd64", "arm64")
};

// Reads the image in `dir` (an OCI layout or an unpacked docker archive).
// With several manifests (a multi-platform index), takes the one for
// linux on this host's architecture.
Result<ImageSource> read_image_dir(const std::string& dir);

// The OCI config JSON's run settings; refuses what is not one.
Result<RunConfig> parse_run_config(const std::string& json_text);

// "sha256:<64 hex>" of a file's bytes.
Result<std::string> sha256_of_file(const std::string& path);

}  // namespace snapvm::image
