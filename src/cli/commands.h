// The snapvm subcommands. Each returns the process exit code and prints
// errors as one line on stderr.
#pragma once

#include <string>

namespace snapvm::cli {

int run_inspect(const std::string& path, bool json);
int run_verify(const std::string& path, bool quiet);

}  // namespace snapvm::cli
