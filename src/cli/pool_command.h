// `snapvm pool`: serve warm clones of a snapshot (serve), and ask a
// running pool for one (take), give it back (release), or see and stop it.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace snapvm::cli {

// Adds the subcommand; returns the function that runs it when chosen (-1
// when it was not).
std::function<int()> register_pool_command(CLI::App& app);

}  // namespace snapvm::cli
