// snapvm guest build|show: the guest side run, bake and image runs boot by
// default (cli/guest_files.h).
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace snapvm::cli {

// Registers `guest`; the returned function runs it if it was chosen (-1
// otherwise).
std::function<int()> register_guest_command(CLI::App& app);

}  // namespace snapvm::cli
