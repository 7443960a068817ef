#include "base/runtime_dir.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>

namespace snapvm {

bool is_vm_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || !std::isalnum(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '-';
  });
}

std::string runtime_path(std::string_view name) {
  std::string out(kRuntimeDir);
  out += '/';
  out += name;
  return out;
}

void make_runtime_dir() { ::mkdir(std::string(kRuntimeDir).c_str(), 0755); }

}  // namespace snapvm
