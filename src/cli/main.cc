// snapvm: the command line.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <optional>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "base/version.h"
#include "cli/agent_commands.h"
#include "cli/commands.h"
#include "cli/control_commands.h"
#include "cli/jail_command.h"
#ifdef SNAPVM_HAVE_IMAGE
#include "cli/image_commands.h"
#endif
#include "cli/vmm_commands.h"

namespace {

// Every exit status the command gives, as --help and README.md list them.
constexpr const char* kExitStatusHelp =
    "Exit status:\n"
    "  0    success; run and restore: the guest powered off or reset, or the VM was stopped\n"
    "  1    the command failed (one line on stderr, or a JSON object on stdout with --json)\n"
    "  2    usage error: unknown command or flag, a missing or malformed argument\n"
    "  70   the VMM lost guest RAM: its snapshot file was truncated or its filesystem filled\n"
    "  125  exec: the command could not run in the guest; jail: the jail could not be built\n"
    "  159  a VMM thread made a system call its seccomp filter forbids (--seccomp)\n"
    "  129, 130, 143  run and restore: SIGHUP, SIGINT or SIGTERM stopped the VM (128+N; its sockets removed)\n"
    "  exec: the command's status (128+N if signal N ended it); run --image: the program's status\n"
    "  (1 if the VM ended before it); jail: the jailed command's status (128+N after signal N)\n\n"
    "Run 'snapvm help COMMAND' or 'snapvm COMMAND --help' for a command's options.";

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

// A usage error: one line (or a JSON object with --json), exit status 2.
int usage_error(const std::string& message, bool json) { return snapvm::cli::report_error(message, json, 2); }

// "run: " for a subcommand, "pool status: " for a nested one, "" for the app:
// what a message says after "snapvm: ".
std::string prefix_of(const CLI::App* app) {
  std::string path = command_path(app);
  return path == "snapvm" ? "" : path.substr(7) + ": ";
}

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

}  // namespace

int main(int argc, char** argv) {
  // Installed as `firecracker`, snapvm takes Firecracker's command line.
  std::vector<char*> args(argv, argv + argc);
  std::string_view self = argc > 0 ? argv[0] : "";
  if (self.substr(self.rfind('/') + 1) == "firecracker") {
    static char subcommand[] = "firecracker";
    args.insert(args.begin() + 1, subcommand);
    argc = static_cast<int>(args.size());
    argv = args.data();
  }
  CLI::App app{"snapvm: a snapshotting microVM monitor for Linux KVM", "snapvm"};
  app.require_subcommand(1);
  app.set_version_flag("--version", snapvm::kProgramVersion);

  std::string path;
  bool json = false;
  auto* inspect = app.add_subcommand("inspect", "Describe a snapshot file (reads no guest RAM)");
  inspect->add_option("FILE", path, "snapshot file")->required();
  inspect->add_flag("--json", json, "machine-readable output");

  bool quiet = false;
  bool verify_json = false;
  auto* verify = app.add_subcommand("verify", "Check every checksum of a snapshot, guest RAM included");
  verify->add_option("FILE", path, "snapshot file")->required();
  verify->add_flag("-q,--quiet", quiet, "print nothing on success");
  verify->add_flag("--json", verify_json, "the report (or the error) as one JSON object on stdout");

  std::string convert_to;
  std::vector<std::string> convert_files;
  auto* convert = app.add_subcommand("convert", "Convert between snapvm snapshots and Firecracker's state + memory files");
  convert->add_option("--to", convert_to, "firecracker: SNAPSHOT STATE MEM; snapvm: STATE MEM SNAPSHOT")
      ->required()
      ->check(CLI::IsMember({"firecracker", "snapvm"}));
  convert->add_option("FILES", convert_files, "the files, in the order --to names")->required()->expected(3);

  std::string rebase_base, rebase_diff;
  auto* rebase = app.add_subcommand(
      "rebase-mem", "Lay a Firecracker Diff memory file over its base, in place (as Firecracker's rebase-snap)");
  rebase->add_option("--base-file", rebase_base, "the base memory file (a Full one, or already rebased); rewritten")
      ->required();
  rebase->add_option("--diff-file", rebase_diff, "the Diff memory file taken after the base")->required();

  auto run_vmm_command = snapvm::cli::register_vmm_commands(app);
  auto run_agent_command = snapvm::cli::register_agent_commands(app);
  auto run_control_command = snapvm::cli::register_control_commands(app);
  std::vector<std::string> vmm_args;
  argc = snapvm::cli::split_jail_args(argc, argv, vmm_args);
  auto run_jail_command = snapvm::cli::register_jail_command(app, vmm_args);
#ifdef SNAPVM_HAVE_IMAGE  // not in the static test-host builds: images are imported on the host
  auto run_image_command = snapvm::cli::register_image_commands(app);
#else
  std::function<int()> run_image_command = [] { return -1; };
#endif

  app.footer(app.get_footer().empty() ? kExitStatusHelp : app.get_footer() + "\n\n" + kExitStatusHelp);

  // `snapvm` alone is a usage error, as with git: the usage on stderr, 2.
  // `snapvm help [COMMAND...]` prints the usage on stdout, 0.
  const bool json_errors = wants_json(argc, argv);
  if (argc < 2) {
    fmt::print(stderr, "{}", app.help());
    return 2;
  }
  if (std::string_view(argv[1]) == "help") {
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
  if (auto unknown = unknown_command(app, argc, argv)) return usage_error(*unknown, json_errors);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help, --version
    return parse_error(app, e, json_errors);
  }
  if (*inspect) return snapvm::cli::run_inspect(path, json);
  if (*verify) return snapvm::cli::run_verify(path, quiet, verify_json);
  if (*convert) return snapvm::cli::run_convert(convert_to, convert_files);
  if (*rebase) return snapvm::cli::run_rebase_mem(rebase_base, rebase_diff);
  int rc = run_vmm_command();
  if (rc < 0) rc = run_agent_command();
  if (rc < 0) rc = run_control_command();
  if (rc < 0) rc = run_jail_command();
  if (rc < 0) rc = run_image_command();
  return rc >= 0 ? rc : 1;
}
