#include "cli/usage.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.h"

namespace snapvm::cli {
namespace {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The candidate closest to `word` when it is close enough to be a slip
// (or `word` begins only it), else "".
std::string closest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_distance) best_distance = d, best = c;
  }
  if (best_distance <= 2 && best_distance < word.size()) return best;
  std::string prefixed;
  for (const auto& c : candidates) {
    if (word.size() >= 2 && c.starts_with(word)) {
      if (!prefixed.empty()) return "";
      prefixed = c;
    }
  }
  return prefixed;
}

std::string suggestion(std::string_view word, const std::vector<std::string>& candidates) {
  std::string c = closest(word, candidates);
  return c.empty() ? "" : fmt::format("; did you mean '{}'?", c);
}

// For flags the dashes do not count: "-i" is no slip of "-h", "--qiet" is of "--quiet".
std::string flag_suggestion(std::string_view flag, const std::vector<std::string>& flags) {
  auto bare = [](std::string_view f) { return f.substr(std::min(f.find_first_not_of('-'), f.size())); };
  std::vector<std::string> names;
  for (const auto& f : flags) names.emplace_back(bare(f));
  std::string c = closest(bare(flag), names);
  for (const auto& f : flags) {
    if (!c.empty() && bare(f) == c) return fmt::format("; did you mean '{}'?", f);
  }
  return "";
}

std::vector<CLI::App*> subcommands_of(CLI::App* app) {
  return app->get_subcommands([](CLI::App* c) { return !c->get_name().empty() && !c->get_disabled(); });
}

CLI::App* find_subcommand(CLI::App* app, std::string_view name) {
  for (auto* c : subcommands_of(app)) {
    if (c->get_name() == name) return c;
  }
  return nullptr;
}

std::vector<std::string> subcommand_names(CLI::App* app) {
  std::vector<std::string> names;
  for (auto* c : subcommands_of(app)) names.push_back(c->get_name());
  return names;
}

// "snapvm pool status" for a subcommand, "snapvm" for the app.
std::string command_path(const CLI::App* app) {
  std::string path = app->get_parent() == nullptr ? "snapvm" : app->get_name();
  for (const CLI::App* p = app->get_parent(); p != nullptr; p = p->get_parent()) {
    path = (p->get_parent() == nullptr ? "snapvm" : p->get_name()) + " " + path;
  }
  return path;
}

// The innermost subcommand the parse selected (the app itself if none).
CLI::App* selected(CLI::App* app) {
  for (;;) {
    auto subs = app->get_subcommands();
    if (subs.empty()) return app;
    app = subs.front();
  }
}

// The flags a command takes, spelled as on a command line.
std::vector<std::string> flag_names(CLI::App* app) {
  std::vector<std::string> names{"--help"};
  for (const CLI::Option* o : app->get_options()) {
    for (const auto& l : o->get_lnames()) names.push_back("--" + l);
    for (const auto& s : o->get_snames()) names.push_back("-" + s);
  }
  return names;
}

std::string one_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (size_t at; (at = s.find('\n')) != std::string::npos;) s.replace(at, 1, "; ");
  return s;
}

// "run: " for a subcommand, "pool status: " for a nested one, "" for the app:
// what a message says after "snapvm: ".
std::string prefix_of(const CLI::App* app) {
  std::string path = command_path(app);
  return path == "snapvm" ? "" : path.substr(7) + ": ";
}

}  // namespace

// Every exit status the command gives, as --help and README.md list them.
const char* const kExitStatusHelp =
    "Exit status:\n"
    "  0    success; run and restore: the guest powered off, or the VM was stopped (snapvm stop)\n"
    "  1    the command failed (one line on stderr, or a JSON object on stdout with --json)\n"
    "  2    usage error: unknown command or flag, a missing or malformed argument\n"
    "  3    run and restore: the guest reset (rebooted, or triple-faulted); firecracker: 0, as Firecracker\n"
    "  4    run and restore: the guest crashed (it panicked, with the pvpanic device its kernel drives)\n"
    "  70   the VMM lost guest RAM: its snapshot file was truncated or its filesystem filled\n"
    "  125  exec: the command could not run in the guest; jail: the jail could not be built\n"
    "  159  a VMM thread made a system call its seccomp filter forbids (--seccomp)\n"
    "  129, 130, 143  run and restore: SIGHUP, SIGINT or SIGTERM stopped the VM (128+N; its sockets removed)\n"
    "  exec: the command's status (128+N if signal N ended it); run --image: the program's status\n"
    "  (1 if the VM ended before it); jail: the jailed command's status (128+N after signal N)\n\n"
    "Run 'snapvm help COMMAND' or 'snapvm COMMAND --help' for a command's options.";

// A usage error: one line (or a JSON object with --json), exit status 2.
int usage_error(const std::string& message, bool json) { return report_error(message, json, 2); }

// Words before the first flag that should name subcommands and do not, as
// "unknown command 'inspekt'; did you mean 'inspect'?".
std::optional<std::string> unknown_command(CLI::App& app, int argc, char** argv) {
  CLI::App* cur = &app;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.empty() || arg.front() == '-') break;
    if (auto* sub = find_subcommand(cur, arg)) {
      cur = sub;
      continue;
    }
    if (cur->get_require_subcommand_min() == 0) break;  // a positional argument
    return fmt::format("{}unknown command '{}'{}", prefix_of(cur), arg, suggestion(arg, subcommand_names(cur)));
  }
  return std::nullopt;
}

// CLI11's parse errors as snapvm's usage errors: one line naming the
// command, unknown flags with the closest one, exit status 2.
int parse_error(CLI::App& app, const CLI::ParseError& e, bool json) {
  CLI::App* cmd = selected(&app);
  const std::string where = command_path(cmd);
  // The first word the innermost command (or any above it) did not take:
  // the cause of an ExtrasError, and of a missing command after a bad flag.
  for (CLI::App* a = cmd; a != nullptr; a = a->get_parent()) {
    for (const auto& extra : a->remaining()) {
      if (extra.size() > 1 && extra.front() == '-' && extra != "--") {
        std::string name = extra.substr(0, extra.find('='));
        return usage_error(fmt::format("{}unknown flag '{}'{}", prefix_of(a), name,
                                       flag_suggestion(name, flag_names(a))),
                           json);
      }
      return usage_error(fmt::format("{}unexpected argument '{}' (see '{} --help')", prefix_of(a), extra,
                                     command_path(a)),
                         json);
    }
  }
  if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && !subcommands_of(cmd).empty() &&
      cmd->get_subcommands().empty() && std::string_view(e.what()).find("ubcommand") != std::string_view::npos) {
    std::string names;
    for (const auto& n : subcommand_names(cmd)) names += (names.empty() ? "" : ", ") + n;
    return usage_error(fmt::format("{}a command is required ({})", prefix_of(cmd), names), json);
  }
  return usage_error(fmt::format("{}{} (see '{} --help')", prefix_of(cmd), one_line(e.what()), where), json);
}

// --json anywhere before "--": errors, usage errors included, are JSON then.
bool wants_json(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") return false;
    if (a == "--json") return true;
  }
  return false;
}

int show_help(CLI::App& app, int argc, char** argv) {
  CLI::App* cur = &app;
  for (int i = 2; i < argc; ++i) {
    CLI::App* sub = find_subcommand(cur, argv[i]);
    if (sub == nullptr) {
      return usage_error(fmt::format("{}unknown command '{}'{}", prefix_of(cur), argv[i],
                                     suggestion(argv[i], subcommand_names(cur))),
                         false);
    }
    cur = sub;
  }
  fmt::print("{}", cur->help());
  return 0;
}

}  // namespace snapvm::cli
