// The snapvm subcommands. Each returns the process exit code and prints
// errors as one line on stderr.
#pragma once

#include <string>
#include <vector>

namespace snapvm::cli {

// A command's error: "snapvm: MESSAGE" on stderr, one line; with --json
// ({"error": MESSAGE, "exit_code": N}) one JSON object on stdout instead,
// for tools that read stdout. Returns `exit_code`.
int report_error(const std::string& message, bool json, int exit_code = 1);

int run_inspect(const std::string& path, bool json);
// `json`: the report (or the error) as one JSON object on stdout.
int run_verify(const std::string& path, bool quiet, bool json = false);
// `to` "firecracker": files = SNAPSHOT STATE MEM; "snapvm": STATE MEM SNAPSHOT.
int run_convert(const std::string& to, const std::vector<std::string>& files);
int run_rebase_mem(const std::string& base, const std::string& diff);

}  // namespace snapvm::cli
