// snapvm jail: runs `snapvm run|restore` confined (src/sandbox/jail.h).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace snapvm::cli {

// Splits `snapvm jail OPTIONS -- VMM ARGS...`: the words after the first
// `--` are the VMM's own command line and never reach the option parser
// (CLI11 would read them as options of its own). Returns how many
// arguments remain for the parser.
int split_jail_args(int argc, char** argv, std::vector<std::string>& vmm_args);

// Registers the subcommand; the returned function runs it if it was chosen
// (-1 otherwise). `vmm_args` must outlive the returned function.
std::function<int()> register_jail_command(CLI::App& app, const std::vector<std::string>& vmm_args);

}  // namespace snapvm::cli
