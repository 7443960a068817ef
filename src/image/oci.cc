#include "image/oci.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "image/digest.h"
#include "image/image_member.h"
#include "image/layer_archive.h"

namespace snapvm::image {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxMetadataBytes = 4 << 20;  // index, manifest, config
constexpr size_t kMaxLayers = 256;
constexpr std::string_view kIndexType = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kDockerListType = "application/vnd.docker.distribution.manifest.list.v2+json";

Result<json> parse_json(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(ErrorCode::kDataLoss, fmt::format("{}: not valid JSON", what));
  return j;
}

// A metadata file of the image directory, parsed.
Result<json> read_json_member(int dir_fd, const std::string& path, const std::string& what) {
  auto fd = SNAPVM_TRY(open_member(dir_fd, path, MemberLinks::kRefused, what));
  return parse_json(SNAPVM_TRY(read_member(fd.get(), kMaxMetadataBytes, what)), what);
}

// "sha256:<64 lowercase hex>" or an error; the hex becomes a file name, so
// nothing else may pass.
Result<std::string> digest_hex(const json& j, const std::string& what) {
  if (!j.is_string()) return make_error(ErrorCode::kDataLoss, fmt::format("{}: no digest", what));
  const std::string d = j.get<std::string>();
  if (d.size() != 71 || d.rfind("sha256:", 0) != 0 ||
      d.find_first_not_of("0123456789abcdef", 7) != std::string::npos) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}: `{}` is not a sha256 digest", what, d.substr(0, 80)));
  }
  return d.substr(7);
}

// A blob of the layout, opened and checked against its digest.
Result<ImageLayer> verified_blob(int dir_fd, const json& descriptor, const std::string& what) {
  if (!descriptor.is_object()) return make_error(ErrorCode::kDataLoss, fmt::format("{}: not a descriptor", what));
  const std::string hex = SNAPVM_TRY(digest_hex(descriptor.value("digest", json()), what));
  const std::string path = "blobs/sha256/" + hex;
  ImageLayer blob{path, SNAPVM_TRY(open_member(dir_fd, path, MemberLinks::kRefused, what))};
  const std::string actual = SNAPVM_TRY(sha256_of_fd(blob.fd.get(), what));
  if (actual != "sha256:" + hex) {
    return make_error(ErrorCode::kDataLoss,
                      fmt::format("{}: blob {} does not match its digest (it hashes to {})", what, hex, actual));
  }
  return blob;
}

std::vector<std::string> strings_of(const json& j) {
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& s : j) {
    if (s.is_string()) out.push_back(s.get<std::string>());
  }
  return out;
}

Result<ImageSource> read_oci_layout(int dir_fd, const std::string& dir) {
  const json index = SNAPVM_TRY(read_json_member(dir_fd, "index.json", dir + "/index.json"));
  json manifests = index.value("manifests", json::array());
  // Nested indexes (multi-platform) are followed a few levels at most.
  for (int depth = 0; depth < 4; ++depth) {
    if (!manifests.is_array() || manifests.empty()) {
      return make_error(ErrorCode::kDataLoss, fmt::format("{}: the index lists no manifest", dir));
    }
    const json* chosen = &manifests[0];
    for (const auto& m : manifests) {
      const json platform = m.value("platform", json::object());
      if (platform.value("os", "linux") == "linux" && platform.value("architecture", "") == host_architecture()) {
        chosen = &m;
        break;
      }
    }
    const std::string media = chosen->value("mediaType", "");
    const ImageLayer blob = SNAPVM_TRY(verified_blob(dir_fd, *chosen, "manifest"));
    const json doc = SNAPVM_TRY(parse_json(SNAPVM_TRY(read_member(blob.fd.get(), kMaxMetadataBytes, "manifest")),
                                           "manifest " + blob.name));
    if (media == kIndexType || media == kDockerListType || doc.contains("manifests")) {
      manifests = doc.value("manifests", json::array());
      continue;
    }
    ImageSource src;
    src.digest = chosen->value("digest", "");
    const ImageLayer config_blob = SNAPVM_TRY(verified_blob(dir_fd, doc.value("config", json()), "image config"));
    const std::string config_text = SNAPVM_TRY(read_member(config_blob.fd.get(), kMaxMetadataBytes, "image config"));
    src.config = SNAPVM_TRY(parse_run_config(config_text));
    src.architecture = SNAPVM_TRY(parse_json(config_text, "image config")).value("architecture", "");
    const json layers = doc.value("layers", json::array());
    if (!layers.is_array() || layers.size() > kMaxLayers) {
      return make_error(ErrorCode::kDataLoss, fmt::format("{}: a manifest with no layer list or over {} layers", dir,
                                                          kMaxLayers));
    }
    for (size_t i = 0; i < layers.size(); ++i) {
      src.layers.push_back(SNAPVM_TRY(verified_blob(dir_fd, layers[i], fmt::format("layer {}", i + 1))));
    }
    return src;
  }
  return make_error(ErrorCode::kDataLoss, fmt::format("{}: indexes nested too deep", dir));
}

// The config's rootfs.diff_ids: the digest of each layer's uncompressed
// tar, which the manifest's layer paths alone do not vouch for.
Result<std::vector<std::string>> diff_ids_of(const json& config, const std::string& what) {
  const json rootfs = config.value("rootfs", json::object());
  const json ids = rootfs.is_object() ? rootfs.value("diff_ids", json()) : json();
  if (!ids.is_array()) return make_error(ErrorCode::kDataLoss, "{}: no rootfs.diff_ids to check the layers by", what);
  std::vector<std::string> out;
  for (size_t i = 0; i < ids.size() && i <= kMaxLayers; ++i) {
    out.push_back("sha256:" + SNAPVM_TRY(digest_hex(ids[i], fmt::format("{}: diff_id {}", what, i + 1))));
  }
  return out;
}

Result<ImageSource> read_docker_archive(int dir_fd, const std::string& dir) {
  const json doc = SNAPVM_TRY(read_json_member(dir_fd, "manifest.json", dir + "/manifest.json"));
  if (!doc.is_array() || doc.empty() || !doc[0].is_object()) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}/manifest.json: no image in it", dir));
  }
  const json& entry = doc[0];
  const json config_path = entry.value("Config", json());
  if (!config_path.is_string()) return make_error(ErrorCode::kDataLoss, "{}/manifest.json: no Config", dir);
  const std::string config_what = fmt::format("{}/manifest.json: Config", dir);
  auto config_fd = SNAPVM_TRY(open_member(dir_fd, config_path.get<std::string>(), MemberLinks::kRefused, config_what));
  const std::string config_text = SNAPVM_TRY(read_member(config_fd.get(), kMaxMetadataBytes, config_what));
  ImageSource src;
  src.config = SNAPVM_TRY(parse_run_config(config_text));
  const json config = SNAPVM_TRY(parse_json(config_text, config_what));
  src.architecture = config.value("architecture", "");
  Sha256 config_digest;
  config_digest.update(config_text.data(), config_text.size());
  src.digest = config_digest.finish();

  const json layers = entry.value("Layers", json::array());
  if (!layers.is_array() || layers.size() > kMaxLayers) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}/manifest.json: no layer list or over {} layers", dir,
                                                        kMaxLayers));
  }
  const auto diff_ids = SNAPVM_TRY(diff_ids_of(config, config_what));
  if (diff_ids.size() != layers.size()) {
    return make_error(ErrorCode::kDataLoss, "{}/manifest.json: {} layers, but the config names {} diff_ids", dir,
                      layers.size(), diff_ids.size());
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string what = fmt::format("{}/manifest.json: layer {}", dir, i + 1);
    if (!layers[i].is_string()) return make_error(ErrorCode::kDataLoss, "{}: not a path", what);
    ImageLayer layer{layers[i].get<std::string>(), {}};
    layer.fd = SNAPVM_TRY(open_member(dir_fd, layer.name, MemberLinks::kInsideOnly, what));
    const std::string actual = SNAPVM_TRY(uncompressed_digest(layer.fd.get(), what));
    if (actual != diff_ids[i]) {
      return make_error(ErrorCode::kDataLoss, "{} (`{}`) does not match the config's diff_id {} (it hashes to {})",
                        what, layer.name.substr(0, 200), diff_ids[i], actual);
    }
    src.layers.push_back(std::move(layer));
  }
  return src;
}

}  // namespace

Result<std::string> sha256_of_file(const std::string& path) {
  auto fd = open_file(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (!fd) return tl::unexpected(fd.error());
  return sha256_of_fd(fd->get(), path);
}

Result<RunConfig> parse_run_config(const std::string& json_text) {
  auto doc = parse_json(json_text, "image config");
  if (!doc) return tl::unexpected(doc.error());
  if (!doc->is_object()) return make_error(ErrorCode::kDataLoss, "image config: not a JSON object");
  const json c = doc->value("config", json::object());
  if (!c.is_object()) return make_error(ErrorCode::kDataLoss, "image config: `config` is not an object");
  RunConfig rc;
  rc.entrypoint = strings_of(c.value("Entrypoint", json()));
  rc.cmd = strings_of(c.value("Cmd", json()));
  rc.env = strings_of(c.value("Env", json()));
  if (c.contains("WorkingDir") && c["WorkingDir"].is_string()) rc.working_dir = c["WorkingDir"].get<std::string>();
  if (c.contains("User") && c["User"].is_string()) rc.user = c["User"].get<std::string>();
  if (c.contains("ExposedPorts") && c["ExposedPorts"].is_object()) {
    for (const auto& [key, _] : c["ExposedPorts"].items()) {
      unsigned port = 0;
      char proto[8] = {};
      if (std::sscanf(key.c_str(), "%u/%7s", &port, proto) >= 1 && port > 0 && port < 65536 &&
          (proto[0] == 0 || std::string(proto) == "tcp")) {
        rc.exposed_tcp_ports.push_back(static_cast<uint16_t>(port));
      }
    }
  }
  return rc;
}

Result<ImageSource> read_image_dir(int dir_fd, const std::string& dir) {
  struct stat st {};
  // Metadata of the wrong shape (a number where an object belongs) makes
  // the JSON library throw: one line, like every other refusal.
  try {
    if (::fstatat(dir_fd, "index.json", &st, AT_SYMLINK_NOFOLLOW) == 0) return read_oci_layout(dir_fd, dir);
    if (::fstatat(dir_fd, "manifest.json", &st, AT_SYMLINK_NOFOLLOW) == 0) return read_docker_archive(dir_fd, dir);
  } catch (const json::exception& e) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}: malformed image metadata ({})", dir, e.what()));
  }
  return make_error(ErrorCode::kInvalidArgument,
                    fmt::format("{}: neither an OCI image layout (index.json) nor a docker archive (manifest.json)", dir));
}

Result<ImageSource> read_image_dir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return errno_error(dir);
  return read_image_dir(fd.get(), dir);
}

}  // namespace snapvm::image
