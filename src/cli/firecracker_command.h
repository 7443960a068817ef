// `snapvm firecracker`: Firecracker's command line and REST API.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace snapvm::cli {

// Adds the subcommand; returns the function that runs it when chosen (-1
// when it was not).
std::function<int()> register_firecracker_command(CLI::App& app);

}  // namespace snapvm::cli
