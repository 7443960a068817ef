#include "base/runtime_dir.h"

#include <sys/stat.h>

namespace snapvm {

std::string runtime_path(std::string_view name) {
  std::string out(kRuntimeDir);
  out += '/';
  out += name;
  return out;
}

void make_runtime_dir() { ::mkdir(std::string(kRuntimeDir).c_str(), 0755); }

}  // namespace snapvm
