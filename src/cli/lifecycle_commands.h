// snapvm ps|stop|kill|logs: the named VMs of this host, found by their
// control sockets in /run/snapvm (base/runtime_dir.h).
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace snapvm::cli {

// Registers the commands; the returned function runs the one chosen (-1
// otherwise).
std::function<int()> register_lifecycle_commands(CLI::App& app);

}  // namespace snapvm::cli
