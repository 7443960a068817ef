// libFuzzer target: what an imported image hands snapvm. The first byte
// picks the parser: even, the image config JSON (must never throw);
// odd, a layer tar applied onto a scratch root (must never crash, and
// nothing may appear outside the root whatever the entries say).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include <fcntl.h>

#include "base/unique_fd.h"
#include "image/layer.h"
#include "image/oci.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    (void)snapvm::image::parse_run_config(rest);
    return 0;
  }
  static const fs::path scratch = fs::temp_directory_path() / ("snapvm-fuzz-layer-" + std::to_string(::getpid()));
  fs::remove_all(scratch);
  fs::create_directories(scratch / "root");
  std::ofstream(scratch / "layer.tar", std::ios::binary) << rest;
  snapvm::UniqueFd root(::open((scratch / "root").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  uint64_t budget = 1 << 20;
  snapvm::image::LayerLimits limits;
  limits.max_entries = 1000;
  (void)snapvm::image::apply_layer((scratch / "layer.tar").string(), root.get(), limits, budget);
  size_t beside_root = 0;
  for (const auto& e : fs::directory_iterator(scratch)) beside_root += e.path().filename() != "root";
  if (beside_root != 1) __builtin_trap();  // only layer.tar may be next to the root
  return 0;
}
