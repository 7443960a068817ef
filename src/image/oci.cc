#include "image/oci.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/file_io.h"
#include "base/unique_fd.h"

namespace snapvm::image {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxMetadataBytes = 4 << 20;  // index, manifest, config
constexpr size_t kMaxLayers = 256;
constexpr std::string_view kIndexType = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kDockerListType = "application/vnd.docker.distribution.manifest.list.v2+json";

// One open, one size check and one read of that size: a file that grows
// after the check is not read further.
Result<std::string> read_small(const std::string& path) {
  auto fd = open_file(path, O_RDONLY | O_CLOEXEC);
  if (!fd) return tl::unexpected(fd.error());
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return errno_error(path);
  if (!S_ISREG(st.st_mode)) return make_error(ErrorCode::kDataLoss, fmt::format("{}: not a regular file", path));
  if (static_cast<uint64_t>(st.st_size) > kMaxMetadataBytes) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}: {} bytes, more than image metadata may be ({})", path,
                                                        st.st_size, kMaxMetadataBytes));
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  auto read = pread_exact(fd->get(), {reinterpret_cast<uint8_t*>(text.data()), text.size()}, 0);
  if (!read) return tl::unexpected(std::move(read.error()).context(path));
  return text;
}

Result<json> parse_json(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(ErrorCode::kDataLoss, fmt::format("{}: not valid JSON", what));
  return j;
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

// A blob of the layout, checked against its digest.
Result<std::string> verified_blob(const std::string& dir, const json& descriptor, const std::string& what) {
  if (!descriptor.is_object()) return make_error(ErrorCode::kDataLoss, fmt::format("{}: not a descriptor", what));
  auto hex = digest_hex(descriptor.value("digest", json()), what);
  if (!hex) return tl::unexpected(hex.error());
  const std::string path = dir + "/blobs/sha256/" + *hex;
  auto actual = sha256_of_file(path);
  if (!actual) return tl::unexpected(std::move(actual.error()).context(what));
  if (*actual != "sha256:" + *hex) {
    return make_error(ErrorCode::kDataLoss,
                      fmt::format("{}: blob {} does not match its digest (it hashes to {})", what, *hex, *actual));
  }
  return path;
}

// A path inside a docker archive: relative, never climbing.
bool safe_relative(const std::string& p) {
  if (p.empty() || p[0] == '/' || p.size() > 4096) return false;
  size_t at = 0;
  while (at <= p.size()) {
    size_t slash = p.find('/', at);
    if (slash == std::string::npos) slash = p.size();
    if (p.compare(at, slash - at, "..") == 0 && slash - at == 2) return false;
    at = slash + 1;
  }
  return true;
}

std::vector<std::string> strings_of(const json& j) {
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& s : j) {
    if (s.is_string()) out.push_back(s.get<std::string>());
  }
  return out;
}

Result<ImageSource> read_oci_layout(const std::string& dir) {
  auto index_text = read_small(dir + "/index.json");
  if (!index_text) return tl::unexpected(index_text.error());
  auto index = parse_json(*index_text, dir + "/index.json");
  if (!index) return tl::unexpected(index.error());
  json manifests = index->value("manifests", json::array());
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
    auto blob = verified_blob(dir, *chosen, "manifest");
    if (!blob) return tl::unexpected(blob.error());
    auto text = read_small(*blob);
    if (!text) return tl::unexpected(text.error());
    auto doc = parse_json(*text, "manifest " + *blob);
    if (!doc) return tl::unexpected(doc.error());
    if (media == kIndexType || media == kDockerListType || doc->contains("manifests")) {
      manifests = doc->value("manifests", json::array());
      continue;
    }
    ImageSource src;
    src.digest = chosen->value("digest", "");
    auto config_blob = verified_blob(dir, doc->value("config", json()), "image config");
    if (!config_blob) return tl::unexpected(config_blob.error());
    auto config_text = read_small(*config_blob);
    if (!config_text) return tl::unexpected(config_text.error());
    auto config = parse_run_config(*config_text);
    if (!config) return tl::unexpected(config.error());
    src.config = std::move(*config);
    auto config_json = parse_json(*config_text, "image config");
    src.architecture = config_json->value("architecture", "");
    const json layers = doc->value("layers", json::array());
    if (!layers.is_array() || layers.size() > kMaxLayers) {
      return make_error(ErrorCode::kDataLoss, fmt::format("{}: a manifest with no layer list or over {} layers", dir,
                                                          kMaxLayers));
    }
    for (size_t i = 0; i < layers.size(); ++i) {
      auto layer = verified_blob(dir, layers[i], fmt::format("layer {}", i + 1));
      if (!layer) return tl::unexpected(layer.error());
      src.layers.push_back(*layer);
    }
    return src;
  }
  return make_error(ErrorCode::kDataLoss, fmt::format("{}: indexes nested too deep", dir));
}

Result<ImageSource> read_docker_archive(const std::string& dir) {
  auto text = read_small(dir + "/manifest.json");
  if (!text) return tl::unexpected(text.error());
  auto doc = parse_json(*text, dir + "/manifest.json");
  if (!doc) return tl::unexpected(doc.error());
  if (!doc->is_array() || doc->empty() || !(*doc)[0].is_object()) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}/manifest.json: no image in it", dir));
  }
  const json& entry = (*doc)[0];
  const std::string config_path = entry.value("Config", "");
  if (!safe_relative(config_path)) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}/manifest.json: config path `{}` leaves the archive", dir,
                                                        config_path.substr(0, 200)));
  }
  auto config_text = read_small(dir + "/" + config_path);
  if (!config_text) return tl::unexpected(config_text.error());
  auto config = parse_run_config(*config_text);
  if (!config) return tl::unexpected(config.error());
  ImageSource src;
  src.config = std::move(*config);
  src.architecture = parse_json(*config_text, "config")->value("architecture", "");
  auto digest = sha256_of_file(dir + "/" + config_path);
  if (!digest) return tl::unexpected(digest.error());
  src.digest = *digest;
  const auto layers = strings_of(entry.value("Layers", json::array()));
  if (layers.size() > kMaxLayers) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}: over {} layers", dir, kMaxLayers));
  }
  for (const auto& l : layers) {
    if (!safe_relative(l)) {
      return make_error(ErrorCode::kDataLoss,
                        fmt::format("{}/manifest.json: layer path `{}` leaves the archive", dir, l.substr(0, 200)));
    }
    src.layers.push_back(dir + "/" + l);
  }
  return src;
}

}  // namespace

Result<std::string> sha256_of_file(const std::string& path) {
  auto fd = open_file(path, O_RDONLY | O_CLOEXEC);
  if (!fd) return tl::unexpected(fd.error());
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(fd->get(), buf.data(), buf.size());
    if (n < 0) return errno_error("read " + path);
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  std::string out = "sha256:";
  for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", md[i]);
  return out;
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

Result<ImageSource> read_image_dir(const std::string& dir) {
  struct stat st {};
  // Metadata of the wrong shape (a number where an object belongs) makes
  // the JSON library throw: one line, like every other refusal.
  try {
    if (::stat((dir + "/index.json").c_str(), &st) == 0) return read_oci_layout(dir);
    if (::stat((dir + "/manifest.json").c_str(), &st) == 0) return read_docker_archive(dir);
  } catch (const json::exception& e) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}: malformed image metadata ({})", dir, e.what()));
  }
  return make_error(ErrorCode::kInvalidArgument,
                    fmt::format("{}: neither an OCI image layout (index.json) nor a docker archive (manifest.json)", dir));
}

}  // namespace snapvm::image
