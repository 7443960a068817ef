// What the image store holds, read back: every host can look images up
// (a static test-host build runs images it cannot import). Importing is
// image/store.h, which needs libarchive.
//
//   STORE/NAME/rootfs.ext4   the image's root filesystem
//   STORE/NAME/image.json    name, digest, architecture, run settings, sizes
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/result.h"

namespace snapvm::image {

// What the image says about how to run it (the OCI config's "config").
struct RunConfig {
  std::vector<std::string> entrypoint, cmd, env;
  std::string working_dir, user;
  std::vector<uint16_t> exposed_tcp_ports;
};

struct StoredImage {
  std::string name, digest, architecture, rootfs;
  std::string os, created;  // as the image's config says ("" if it did not, or for older imports)
  RunConfig config;
  uint64_t rootfs_bytes = 0, content_bytes = 0;
  uint64_t layers = 0;
  std::vector<std::string> layer_digests;  // lowest first (empty for older imports)
  // Every layer was checked against a digest the image's digest covers
  // (imports before that check was made for docker archives lack it, and
  // are never reused).
  bool layers_verified = false;
};

// SNAPVM_IMAGE_STORE, else /var/lib/snapvm/images.
std::string default_store();

// The OCI architecture name of this host ("amd64", "arm64").
const char* host_architecture();
// The same as the kernel names it ("x86_64", "aarch64"), for messages.
const char* host_machine();

// Names become directory names: letters, digits, '.', '_', ':', '-', up to
// 128, not starting with '.' or '-'.
Status check_image_name(const std::string& name);

Result<StoredImage> find_image(const std::string& store, const std::string& name);
Result<std::vector<StoredImage>> list_images(const std::string& store);

// image.json's "config" object.
nlohmann::json run_config_json(const RunConfig& c);

}  // namespace snapvm::image
