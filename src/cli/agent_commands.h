// `snapvm exec` and `snapvm cp`: talk to the guest agent of a running VM.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace snapvm::cli {

std::function<int()> register_agent_commands(CLI::App& app);

}  // namespace snapvm::cli
