#include "image/docker_archive.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "image/digest.h"
#include "image/image_member.h"
#include "image/layer_archive.h"
#include "image/source_ref.h"

namespace snapvm::image {
namespace {

using nlohmann::json;

constexpr size_t kMaxRepoTags = 256;  // of one image

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

std::vector<std::string> repo_tags_of(const json& entry) {
  std::vector<std::string> tags;
  const json list = entry.value("RepoTags", json());
  if (!list.is_array()) return tags;
  for (size_t i = 0; i < list.size() && i < kMaxRepoTags; ++i) {
    if (list[i].is_string()) tags.push_back(list[i].get<std::string>());
  }
  return tags;
}

// The entry of manifest.json the choice names: the one whose RepoTags
// hold its tag, or the only one.
Result<const json*> chosen_entry(const json& doc, const ImageChoice& choice, const std::string& dir) {
  if (!doc.is_array() || doc.empty()) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}/manifest.json: no image in it", dir));
  }
  if (doc.size() > kMaxImagesListed) {
    return make_error(ErrorCode::kDataLoss, "{}/manifest.json: over {} images", dir, kMaxImagesListed);
  }
  std::vector<std::string> all_tags;
  for (const auto& entry : doc) {
    if (!entry.is_object()) {
      return make_error(ErrorCode::kDataLoss, "{}/manifest.json: malformed image metadata (an entry is not an object)",
                        dir);
    }
    for (auto& t : repo_tags_of(entry)) all_tags.push_back(std::move(t));
  }
  if (choice.tag.empty()) {
    if (doc.size() == 1) return &doc[0];
    return make_error(ErrorCode::kInvalidArgument, "{} holds {} images ({}); name one as docker-archive:{}:TAG", dir,
                      doc.size(), all_tags.empty() ? "none tagged" : "tags: " + name_list(all_tags), dir);
  }
  const std::string wanted = normalized_docker_tag(choice.tag);
  for (const auto& entry : doc) {
    for (const auto& t : repo_tags_of(entry)) {
      if (normalized_docker_tag(t) == wanted) return &entry;
    }
  }
  return make_error(ErrorCode::kNotFound, "{}: no image tagged `{}` ({})", dir, choice.tag.substr(0, 200),
                    all_tags.empty() ? "the archive has no tags" : "its tags: " + name_list(all_tags));
}

Result<ImageSource> read_archive(int dir_fd, const std::string& dir, const ImageChoice& choice) {
  const json doc = SNAPVM_TRY(read_json_member(dir_fd, "manifest.json", dir + "/manifest.json"));
  const json& entry = *SNAPVM_TRY(chosen_entry(doc, choice, dir));
  const json config_path = entry.value("Config", json());
  if (!config_path.is_string()) return make_error(ErrorCode::kDataLoss, "{}/manifest.json: no Config", dir);
  const std::string config_what = fmt::format("{}/manifest.json: Config", dir);
  auto config_fd = SNAPVM_TRY(open_member(dir_fd, config_path.get<std::string>(), MemberLinks::kRefused, config_what));
  const std::string config_text = SNAPVM_TRY(read_member(config_fd.get(), kMaxMetadataBytes, config_what));
  ImageSource src;
  src.config = SNAPVM_TRY(parse_run_config(config_text));
  const json config = SNAPVM_TRY(parse_json(config_text, config_what));
  src.facts = config_facts(config);
  // Before any layer is hashed: a wrong image is refused at once.
  SNAPVM_CHECK_OK(check_architecture(src.facts, choice));
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
    // Inside the archive only: `..` and absolute paths are refused, links
    // resolve with the archive as `/`.
    layer.fd = SNAPVM_TRY(open_member(dir_fd, layer.name, MemberLinks::kInsideOnly, what));
    const std::string actual = SNAPVM_TRY(uncompressed_digest(layer.fd.get(), what));
    if (actual != diff_ids[i]) {
      return make_error(ErrorCode::kDataLoss, "{} (`{}`) does not match the config's diff_id {} (it hashes to {})",
                        what, layer.name.substr(0, 200), diff_ids[i], actual);
    }
    src.layers.push_back(std::move(layer));
    src.layer_digests.push_back(diff_ids[i]);
  }
  return src;
}

}  // namespace

Result<ImageSource> read_docker_archive(int dir_fd, const std::string& dir, const ImageChoice& choice) {
  return without_json_exceptions(dir, [&] { return read_archive(dir_fd, dir, choice); });
}

}  // namespace snapvm::image
