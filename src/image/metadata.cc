#include "image/metadata.h"

#include "image/catalog.h"
#include "image/image_member.h"

namespace snapvm::image {

using nlohmann::json;

Result<json> parse_json(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(ErrorCode::kDataLoss, fmt::format("{}: not valid JSON", what));
  return j;
}

Result<json> read_json_member(int dir_fd, const std::string& path, const std::string& what) {
  auto fd = SNAPVM_TRY(open_member(dir_fd, path, MemberLinks::kRefused, what));
  return parse_json(SNAPVM_TRY(read_member(fd.get(), kMaxMetadataBytes, what)), what);
}

Result<std::string> digest_hex(const json& j, const std::string& what) {
  if (!j.is_string()) return make_error(ErrorCode::kDataLoss, fmt::format("{}: no digest", what));
  const std::string d = j.get<std::string>();
  if (d.size() != 71 || d.rfind("sha256:", 0) != 0 ||
      d.find_first_not_of("0123456789abcdef", 7) != std::string::npos) {
    return make_error(ErrorCode::kDataLoss, fmt::format("{}: `{}` is not a sha256 digest", what, d.substr(0, 80)));
  }
  return d.substr(7);
}

ConfigFacts config_facts(const json& config) {
  ConfigFacts f;
  if (!config.is_object()) return f;
  auto text = [&](const char* key) {
    auto it = config.find(key);
    return it != config.end() && it->is_string() ? it->get<std::string>().substr(0, 200) : std::string();
  };
  f.architecture = text("architecture");
  f.os = text("os");
  f.created = text("created");
  return f;
}

Status check_architecture(const ConfigFacts& facts, const ImageChoice& choice) {
  if (choice.allow_other_arch || facts.architecture.empty() || facts.architecture == host_architecture()) return {};
  return make_error(ErrorCode::kFailedPrecondition,
                    "{} is for {}; this host runs {} (--allow-other-arch imports it anyway)",
                    choice.name.empty() ? std::string("the image") : "image " + choice.name, facts.architecture,
                    host_machine());
}

std::string name_list(const std::vector<std::string>& names, size_t max) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < max; ++i) out += (i == 0 ? "" : ", ") + names[i].substr(0, 200);
  if (names.size() > max) out += fmt::format(" and {} more", names.size() - max);
  return out;
}

}  // namespace snapvm::image
