// snapvm jail: runs `snapvm run|restore` confined (src/sandbox/jail.h).
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace snapvm::cli {

// Registers the subcommand; the returned function runs it if it was chosen
// (-1 otherwise).
std::function<int()> register_jail_command(CLI::App& app);

}  // namespace snapvm::cli
