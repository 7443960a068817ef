#include "image/oci.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "image/digest.h"
#include "image/docker_archive.h"
#include "image/image_member.h"

namespace snapvm::image {
namespace {

using nlohmann::json;

constexpr std::string_view kIndexType = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kDockerListType = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr const char* kRefNameKey = "org.opencontainers.image.ref.name";

// A blob of the layout, opened and checked against its digest.
Result<ImageLayer> verified_blob(int dir_fd, const json& descriptor, const std::string& what) {
  if (!descriptor.is_object()) return make_error(ErrorCode::kDataLoss, fmt::format("{}: not a descriptor", what));
  const std::string hex = SNAPVM_TRY(digest_hex(descriptor.value("digest", json()), what));
  const std::string path = "blobs/sha256/" + hex;
  // Opened before the aggregate is built: an early return from inside its
  // braces would skip destroying the members already made (a leak the
  // fuzzer found with a FIFO for a layer blob).
  UniqueFd fd = SNAPVM_TRY(open_member(dir_fd, path, MemberLinks::kRefused, what));
  ImageLayer blob{path, std::move(fd)};
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

// A string field of an object, "" if absent or of another type.
std::string text_of(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// The tag an index entry carries (skopeo's oci:DIR:TAG, umoci's --image DIR:TAG).
std::string ref_name_of(const json& entry) { return text_of(entry.value("annotations", json::object()), kRefNameKey); }

// "linux/amd64" of an entry's platform, "" if it names none.
std::string platform_of(const json& entry) {
  const json platform = entry.value("platform", json::object());
  const std::string arch = text_of(platform, "architecture");
  if (arch.empty()) return "";
  const std::string os = text_of(platform, "os");
  return (os.empty() ? "linux" : os) + "/" + arch;
}

// The entries of an index the choice's tag names (the top level only:
// nested indexes carry platforms, not tags), or all of them.
Result<std::vector<const json*>> entries_for_tag(const json& manifests, const ImageChoice& choice,
                                                 const std::string& dir) {
  std::vector<std::string> tags;
  for (const auto& m : manifests) {
    const std::string t = ref_name_of(m);
    if (!t.empty() && std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
  }
  std::vector<const json*> out;
  for (const auto& m : manifests) {
    if (choice.tag.empty() || ref_name_of(m) == choice.tag) out.push_back(&m);
  }
  if (!choice.tag.empty() && out.empty()) {
    return make_error(ErrorCode::kNotFound, "{}: no image tagged `{}` ({})", dir, choice.tag.substr(0, 200),
                      tags.empty() ? "its index has no tags" : "its tags: " + name_list(tags));
  }
  if (choice.tag.empty() && tags.size() > 1) {
    return make_error(ErrorCode::kInvalidArgument, "{} holds {} images (tags: {}); name one as oci:{}:TAG", dir,
                      tags.size(), name_list(tags), dir);
  }
  return out;
}

// Of several entries, the one for linux on this host's architecture.
Result<const json*> entry_for_host(const std::vector<const json*>& entries, const std::string& dir) {
  if (entries.size() == 1) return entries[0];
  const std::string host = std::string("linux/") + host_architecture();
  std::vector<std::string> platforms;
  for (const json* e : entries) {
    const std::string p = platform_of(*e);
    if (p == host) return e;
    if (!p.empty()) platforms.push_back(p);
  }
  if (platforms.empty()) {
    return make_error(ErrorCode::kDataLoss, "{}: {} manifests with neither tags nor platforms to tell them apart", dir,
                      entries.size());
  }
  return make_error(ErrorCode::kNotFound, "{}: no manifest for {} (the index has {})", dir, host,
                    name_list(platforms));
}

Result<ImageSource> read_manifest(int dir_fd, const std::string& dir, const json& descriptor, const json& doc,
                                  const ImageChoice& choice) {
  ImageSource src;
  src.digest = descriptor.value("digest", "");
  const ImageLayer config_blob = SNAPVM_TRY(verified_blob(dir_fd, doc.value("config", json()), "image config"));
  const std::string config_text = SNAPVM_TRY(read_member(config_blob.fd.get(), kMaxMetadataBytes, "image config"));
  src.config = SNAPVM_TRY(parse_run_config(config_text));
  src.facts = config_facts(SNAPVM_TRY(parse_json(config_text, "image config")));
  // Before any layer is hashed: a wrong image is refused at once.
  SNAPVM_CHECK_OK(check_architecture(src.facts, choice));
  const json layers = doc.value("layers", json::array());
  if (!layers.is_array() || layers.size() > kMaxLayers) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}: a manifest with no layer list or over {} layers", dir,
                                                        kMaxLayers));
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    src.layers.push_back(SNAPVM_TRY(verified_blob(dir_fd, layers[i], fmt::format("layer {}", i + 1))));
    src.layer_digests.push_back(layers[i].value("digest", ""));
  }
  return src;
}

Result<ImageSource> read_layout(int dir_fd, const std::string& dir, const ImageChoice& choice) {
  const json index = SNAPVM_TRY(read_json_member(dir_fd, "index.json", dir + "/index.json"));
  json manifests = index.value("manifests", json::array());
  // Nested indexes (multi-platform) are followed a few levels at most.
  for (int depth = 0; depth < 4; ++depth) {
    if (!manifests.is_array() || manifests.empty()) {
      return make_error(ErrorCode::kDataLoss, fmt::format("{}: the index lists no manifest", dir));
    }
    if (manifests.size() > kMaxImagesListed) {
      return make_error(ErrorCode::kDataLoss, "{}: an index of over {} manifests", dir, kMaxImagesListed);
    }
    for (const auto& m : manifests) {
      if (!m.is_object()) {
        return make_error(ErrorCode::kDataLoss, "{}: malformed image metadata (an index entry is not an object)", dir);
      }
    }
    // Tags name the entries of index.json; a nested index lists platforms.
    std::vector<const json*> candidates;
    if (depth == 0) {
      candidates = SNAPVM_TRY(entries_for_tag(manifests, choice, dir));
    } else {
      for (const auto& m : manifests) candidates.push_back(&m);
    }
    const json chosen = *SNAPVM_TRY(entry_for_host(candidates, dir));
    const std::string media = chosen.value("mediaType", "");
    const ImageLayer blob = SNAPVM_TRY(verified_blob(dir_fd, chosen, "manifest"));
    const json doc = SNAPVM_TRY(parse_json(SNAPVM_TRY(read_member(blob.fd.get(), kMaxMetadataBytes, "manifest")),
                                           "manifest " + blob.name));
    if (media == kIndexType || media == kDockerListType || doc.contains("manifests")) {
      manifests = doc.value("manifests", json::array());
      continue;
    }
    return read_manifest(dir_fd, dir, chosen, doc, choice);
  }
  return make_error(ErrorCode::kDataLoss, fmt::format("{}: indexes nested too deep", dir));
}

}  // namespace

Result<ImageSource> read_oci_layout(int dir_fd, const std::string& dir, const ImageChoice& choice) {
  return without_json_exceptions(dir, [&] { return read_layout(dir_fd, dir, choice); });
}

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

Result<ImageSource> read_image_dir(int dir_fd, const std::string& dir, const ImageChoice& choice) {
  struct stat st {};
  if (::fstatat(dir_fd, "index.json", &st, AT_SYMLINK_NOFOLLOW) == 0) return read_oci_layout(dir_fd, dir, choice);
  if (::fstatat(dir_fd, "manifest.json", &st, AT_SYMLINK_NOFOLLOW) == 0) {
    return read_docker_archive(dir_fd, dir, choice);
  }
  return make_error(ErrorCode::kInvalidArgument,
                    fmt::format("{}: neither an OCI image layout (index.json) nor a docker archive (manifest.json)", dir));
}

Result<ImageSource> read_image_dir(const std::string& dir, const ImageChoice& choice) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return errno_error(dir);
  return read_image_dir(fd.get(), dir, choice);
}

}  // namespace snapvm::image
