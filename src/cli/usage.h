// How the command line answers a user who typed it wrong: usage errors as
// one line (or a JSON object with --json) and exit status 2, unknown
// commands and flags named with the closest one, `snapvm help [COMMAND]`,
// and the list of exit statuses --help and README.md give.
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

namespace snapvm::cli {

// Every exit status the command gives, as --help and README.md list them.
extern const char* const kExitStatusHelp;

// A usage error: one line (or a JSON object with `json`), exit status 2.
int usage_error(const std::string& message, bool json);
// Words before the first flag that should name subcommands and do not, as
// "unknown command 'inspekt'; did you mean 'inspect'?".
std::optional<std::string> unknown_command(CLI::App& app, int argc, char** argv);
// CLI11's parse errors as snapvm's usage errors: one line naming the
// command, unknown flags with the closest one, exit status 2.
int parse_error(CLI::App& app, const CLI::ParseError& e, bool json);
// --json anywhere before "--": errors, usage errors included, are JSON then.
bool wants_json(int argc, char** argv);
// `snapvm help [COMMAND...]`: that command's usage on stdout, 0.
int show_help(CLI::App& app, int argc, char** argv);

}  // namespace snapvm::cli
