// Subcommands that drive a VM. Built where this architecture has a VMM;
// elsewhere registering them adds a note to --help instead.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace snapvm::cli {

// Adds the VM subcommands to `app`; returns the function that runs whichever
// of them was chosen (or nullptr when none was).
std::function<int()> register_vmm_commands(CLI::App& app);

}  // namespace snapvm::cli
