// snapvm image import|list|inspect|rm: container images into the local image store
// (src/image/store.h).
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace snapvm::cli {

// Registers `image`; the returned function runs it if it was chosen (-1
// otherwise). Builds without libarchive say so when it is run.
std::function<int()> register_image_commands(CLI::App& app);

}  // namespace snapvm::cli
