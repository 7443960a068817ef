#include "image/source_ref.h"

#include <array>
#include <filesystem>
#include <string_view>

#include "image/catalog.h"

namespace snapvm::image {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kOci = "oci:";
constexpr std::string_view kDockerArchive = "docker-archive:";
// skopeo's other transports: each needs a registry, a daemon or a format
// the import does not read.
constexpr std::array<std::string_view, 7> kNotLocal = {"docker:",    "docker-daemon:", "containers-storage:",
                                                       "oci-archive:", "dir:",         "ostree:",
                                                       "sif:"};

// "PATH[:TAG]" after a transport's prefix: the first ':' ends the path, as
// skopeo reads it.
Result<SourceRef> split_path_and_tag(SourceRef::Kind kind, std::string_view rest, const std::string& source) {
  SourceRef ref;
  ref.kind = kind;
  const size_t colon = rest.find(':');
  ref.path = std::string(rest.substr(0, colon));
  if (colon != std::string_view::npos) ref.tag = std::string(rest.substr(colon + 1));
  if (ref.path.empty() || (colon != std::string_view::npos && ref.tag.empty())) {
    return make_error(ErrorCode::kInvalidArgument, "`{}`: write {}PATH or {}PATH:TAG", source.substr(0, 200),
                      source.substr(0, source.find(':') + 1), source.substr(0, source.find(':') + 1));
  }
  if (ref.tag.size() > 255) return make_error(ErrorCode::kInvalidArgument, "`{}...`: the tag is over 255 bytes",
                                              source.substr(0, 80));
  return ref;
}

// The file or directory name an image came in, without a tarball's suffix.
std::string stem_of(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::absolute(path, ec).lexically_normal();
  std::string name = p.filename().string();
  if (name.empty()) name = p.parent_path().filename().string();
  for (std::string_view suffix : {".tar.gz", ".tar.zst", ".tgz", ".tar"}) {
    if (name.size() > suffix.size() && name.ends_with(suffix)) {
      name.resize(name.size() - suffix.size());
      break;
    }
  }
  return name;
}

// "docker.io/library/alpine:3.19" -> "alpine:3.19"; "alpine" -> "alpine".
std::string last_component(const std::string& ref) {
  const size_t slash = ref.rfind('/');
  return slash == std::string::npos ? ref : ref.substr(slash + 1);
}

}  // namespace

Result<SourceRef> parse_source(const std::string& source) {
  const std::string_view s = source;
  if (s.starts_with(kOci)) return split_path_and_tag(SourceRef::Kind::kOciLayout, s.substr(kOci.size()), source);
  if (s.starts_with(kDockerArchive)) {
    return split_path_and_tag(SourceRef::Kind::kDockerArchive, s.substr(kDockerArchive.size()), source);
  }
  std::error_code ec;
  for (std::string_view transport : kNotLocal) {
    if (s.starts_with(transport) && !fs::exists(source, ec)) {
      return make_error(ErrorCode::kInvalidArgument,
                        "`{}` is not a local image: copy it into one first (skopeo copy {} oci:DIR:TAG), then "
                        "import oci:DIR:TAG",
                        source.substr(0, 200), source.substr(0, 200));
    }
  }
  if (source.empty()) return make_error(ErrorCode::kInvalidArgument, "an empty SOURCE");
  return SourceRef{SourceRef::Kind::kPath, source, ""};
}

std::string normalized_docker_tag(const std::string& tag) {
  std::string name = tag, suffix;
  // The tag (or digest) is what follows the last ':' or '@' after the last '/'.
  const size_t slash = name.rfind('/');
  const size_t mark = name.find_first_of(":@", slash == std::string::npos ? 0 : slash + 1);
  if (mark != std::string::npos) {
    suffix = name.substr(mark);
    name.resize(mark);
  } else {
    suffix = ":latest";
  }
  // A first component with a '.' or ':', or "localhost", names a registry.
  const size_t first = name.find('/');
  const std::string head = name.substr(0, first);
  const bool has_registry =
      first != std::string::npos && (head.find_first_of(".:") != std::string::npos || head == "localhost");
  if (!has_registry) name = (first == std::string::npos ? "docker.io/library/" : "docker.io/") + name;
  if (name.starts_with("index.docker.io/")) name = name.substr(6);
  return name + suffix;
}

Result<std::string> default_image_name(const SourceRef& source) {
  std::string name;
  if (source.tag.empty()) {
    name = stem_of(source.path);
  } else if (source.kind == SourceRef::Kind::kOciLayout && source.tag.find_first_of(":/@") == std::string::npos) {
    name = stem_of(source.path) + ":" + source.tag;  // oci:alpine:3.19
  } else {
    name = last_component(source.tag);  // a docker reference
  }
  if (!check_image_name(name)) {
    return make_error(ErrorCode::kInvalidArgument, "no image name follows from `{}`: give one as NAME",
                      (source.path + (source.tag.empty() ? "" : ":" + source.tag)).substr(0, 200));
  }
  return name;
}

}  // namespace snapvm::image
