// Reading a container image from disk: an OCI image layout directory
// (oci-layout, index.json, blobs/sha256/...) or the directory a
// `docker save` tarball unpacks to (manifest.json naming a config and
// layer tars: docker_archive.h). Every file is opened inside that
// directory (image_member.h); every blob named by digest is checked
// against it, and a docker archive's layers against its config's
// rootfs.diff_ids, before use; sizes and counts are bounded, since images
// come from anywhere.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "image/catalog.h"
#include "image/metadata.h"

namespace snapvm::image {

// A layer, open and verified: applying it reads the file that was
// checked, not whatever its path names by then.
struct ImageLayer {
  std::string name;  // its path in the image directory, for messages
  UniqueFd fd;
};

struct ImageSource {
  // Names the image's content: the manifest's digest (OCI), the config's
  // (docker archive, whose manifest.json is not content-addressed; the
  // config names the layers by their diff_ids, which are checked).
  std::string digest;
  std::vector<ImageLayer> layers;          // lowest first
  std::vector<std::string> layer_digests;  // what each was checked against: its blob's digest
                                           // (OCI), its diff_id (docker archive)
  RunConfig config;
  ConfigFacts facts;  // architecture ("amd64", "arm64"), os, created, as the config says
};

// Reads the image in `dir` (an OCI layout or an unpacked docker archive).
// The choice's tag picks an image of several (an OCI index's
// org.opencontainers.image.ref.name, a docker archive's RepoTags); with
// none, the source must hold one image. A multi-platform index yields the
// manifest for linux on this host's architecture.
Result<ImageSource> read_image_dir(const std::string& dir, const ImageChoice& choice = {});
Result<ImageSource> read_image_dir(int dir_fd, const std::string& name, const ImageChoice& choice = {});

// The OCI layout in `dir_fd` alone (`dir` names it in messages).
Result<ImageSource> read_oci_layout(int dir_fd, const std::string& dir, const ImageChoice& choice);

// The OCI config JSON's run settings; refuses what is not one.
Result<RunConfig> parse_run_config(const std::string& json_text);

// "sha256:<64 hex>" of a file's bytes.
Result<std::string> sha256_of_file(const std::string& path);

}  // namespace snapvm::image
