// `snapvm pause|resume|info|snapshot VM`: requests to a running VM's control
// socket.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace snapvm::cli {

std::function<int()> register_control_commands(CLI::App& app);

// A VM named on the command line: a control socket path as given, or a name
// under /run/snapvm (NAME.sock).
std::string control_path_for(const std::string& vm);

}  // namespace snapvm::cli
