// The snapvm subcommands. Each returns the process exit code and prints
// errors as one line on stderr.
#pragma once

#include <string>
#include <vector>

namespace snapvm::cli {

int run_inspect(const std::string& path, bool json);
int run_verify(const std::string& path, bool quiet);
// `to` "firecracker": files = SNAPSHOT STATE MEM; "snapvm": STATE MEM SNAPSHOT.
int run_convert(const std::string& to, const std::vector<std::string>& files);
int run_rebase_mem(const std::string& base, const std::string& diff);

}  // namespace snapvm::cli
