#include "base/paths.h"

#include <stdlib.h>

#include <memory>

namespace snapvm {
namespace {

Result<std::string> real(const std::string& path) {
  std::unique_ptr<char, decltype(&::free)> r(::realpath(path.c_str(), nullptr), &::free);
  if (!r) return errno_error(fmt::format("resolve {}", path));
  return std::string(r.get());
}

std::pair<std::string, std::string> split(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace

Result<std::string> directory_of(const std::string& file) { return real(split(file).first); }

Result<std::string> resolve_within(const std::string& path, const std::string& dir) {
  std::string root = SNAPVM_TRY(real(dir));
  std::string resolved;
  if (auto whole = real(path)) {
    resolved = *whole;
  } else {
    auto [parent, name] = split(path);
    if (name.empty() || name == "." || name == "..") return tl::unexpected(whole.error());
    resolved = SNAPVM_TRY(real(parent)) + "/" + name;
  }
  std::string prefix = root == "/" ? "/" : root + "/";
  if (resolved.compare(0, prefix.size(), prefix) != 0) {
    return make_error(ErrorCode::kFailedPrecondition, "{} lies outside {}", path, root);
  }
  return resolved;
}

}  // namespace snapvm
