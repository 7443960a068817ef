#include "image/catalog.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace snapvm::image {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// image.json is written by the import, but a store is a directory anybody
// with access can edit: a wrong shape is one error, never an exception.
Result<StoredImage> read_stored(const fs::path& dir) {
  std::ifstream in(dir / "image.json");
  if (!in) return make_error(ErrorCode::kNotFound, fmt::format("no image at {}", dir.string()));
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}/image.json: not valid", dir.string()));
  }
  try {
    StoredImage s;
    s.name = j.value("name", "");
    s.digest = j.value("digest", "");
    s.architecture = j.value("architecture", "");
    s.rootfs = (dir / "rootfs.ext4").string();
    s.os = j.value("os", "");
    s.created = j.value("created", "");
    s.rootfs_bytes = j.value("rootfs_bytes", uint64_t{0});
    s.content_bytes = j.value("content_bytes", uint64_t{0});
    s.layers = j.value("layers", uint64_t{0});
    s.layer_digests = j.value("layer_digests", std::vector<std::string>{});
    s.layers_verified = j.value("layers_verified", false);
    const json c = j.value("config", json::object());
    s.config.entrypoint = c.value("entrypoint", std::vector<std::string>{});
    s.config.cmd = c.value("cmd", std::vector<std::string>{});
    s.config.env = c.value("env", std::vector<std::string>{});
    s.config.working_dir = c.value("working_dir", "");
    s.config.user = c.value("user", "");
    s.config.exposed_tcp_ports = c.value("exposed_tcp_ports", std::vector<uint16_t>{});
    return s;
  } catch (const json::exception& e) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}/image.json: {}", dir.string(), e.what()));
  }
}

}  // namespace

std::string default_store() {
  const char* env = std::getenv("SNAPVM_IMAGE_STORE");
  return env != nullptr && *env != 0 ? env : "/var/lib/snapvm/images";
}

const char* host_architecture() {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#else
  return "unknown";
#endif
}

const char* host_machine() {
#if defined(__x86_64__)
  return "x86_64";
#elif defined(__aarch64__)
  return "aarch64";
#else
  return "unknown";
#endif
}

Status check_image_name(const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 128 && name[0] != '.' && name[0] != '-' &&
                  name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") ==
                      std::string::npos;
  if (!ok) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("image name `{}`: use letters, digits, '.', '_', ':' and '-' (up to 128)",
                                  name.substr(0, 200)));
  }
  return {};
}

Result<StoredImage> find_image(const std::string& store, const std::string& name) {
  SNAPVM_CHECK_OK(check_image_name(name));
  auto found = read_stored(fs::path(store) / name);
  if (!found && found.error().code() == ErrorCode::kNotFound) {
    return make_error(ErrorCode::kNotFound, fmt::format("no image `{}` in {} (snapvm image import SOURCE {})", name,
                                                        store, name));
  }
  return found;
}

Result<std::vector<StoredImage>> list_images(const std::string& store) {
  std::vector<StoredImage> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(store, ec)) {
    if (!e.is_directory() || e.path().filename().string().starts_with(".")) continue;
    if (auto s = read_stored(e.path())) out.push_back(std::move(*s));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

json run_config_json(const RunConfig& c) {
  return {{"entrypoint", c.entrypoint}, {"cmd", c.cmd},   {"env", c.env},
          {"working_dir", c.working_dir}, {"user", c.user}, {"exposed_tcp_ports", c.exposed_tcp_ports}};
}

}  // namespace snapvm::image
