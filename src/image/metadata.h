// The JSON an image carries (an OCI index and manifests, a config, a docker
// archive's manifest.json): untrusted, so read with a size bound, parsed
// without exceptions, and digests checked to be digests before they become
// file names. Shared by the OCI layout and docker archive readers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace snapvm::image {

inline constexpr uint64_t kMaxMetadataBytes = 4 << 20;  // index, manifest, config
inline constexpr size_t kMaxLayers = 256;
inline constexpr size_t kMaxImagesListed = 1024;  // entries of an index or of docker's manifest.json

// Which image of a source to read, and what it must be.
struct ImageChoice {
  std::string tag;               // "" for the only image the source holds
  bool allow_other_arch = true;  // false: refuse a config for another architecture,
                                 // before any layer is read
  std::string name;              // the image in messages ("image NAME is for arm64")
};

// What a config says about the image beside how to run it.
struct ConfigFacts {
  std::string architecture, os, created;
};

Result<nlohmann::json> parse_json(const std::string& text, const std::string& what);

// A metadata file of the image directory (no links), parsed.
Result<nlohmann::json> read_json_member(int dir_fd, const std::string& path, const std::string& what);

// "sha256:<64 lowercase hex>" -> the hex, or an error: the hex becomes a
// file name, so nothing else may pass.
Result<std::string> digest_hex(const nlohmann::json& j, const std::string& what);

// The config's architecture, os and creation time (strings, "" if absent).
ConfigFacts config_facts(const nlohmann::json& config);

// Refuses a config for another architecture than this host's unless the
// choice allows it. A config that names none is taken.
Status check_architecture(const ConfigFacts& facts, const ImageChoice& choice);

// fn(), with the JSON library's exceptions (metadata of the wrong shape:
// a number where an object belongs) turned into one line about `what`.
template <typename F>
auto without_json_exceptions(const std::string& what, F fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const nlohmann::json::exception& e) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}: malformed image metadata ({})", what, e.what()));
  }
}

// "a, b, c" of at most `max` names, then "and N more".
std::string name_list(const std::vector<std::string>& names, size_t max = 8);

}  // namespace snapvm::image
