// `snapvm bake`: an image booted, its program started and awaited, and the
// warm VM written to a snapshot that clones (snapvm restore, snapvm pool)
// start from with the program already serving.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace snapvm::cli {

// Adds the subcommand; returns the function that runs it when chosen (-1
// when it was not).
std::function<int()> register_bake_command(CLI::App& app);

}  // namespace snapvm::cli
