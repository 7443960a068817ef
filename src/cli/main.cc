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
#include "cli/lifecycle_commands.h"
#include "cli/usage.h"
#ifdef SNAPVM_HAVE_IMAGE
#include "cli/guest_command.h"
#include "cli/image_commands.h"
#endif
#include "cli/vmm_commands.h"

int main(int argc, char** argv) {
  using snapvm::cli::kExitStatusHelp, snapvm::cli::parse_error, snapvm::cli::unknown_command,
      snapvm::cli::usage_error, snapvm::cli::wants_json;
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
  auto run_lifecycle_command = snapvm::cli::register_lifecycle_commands(app);
  std::vector<std::string> vmm_args;
  argc = snapvm::cli::split_jail_args(argc, argv, vmm_args);
  auto run_jail_command = snapvm::cli::register_jail_command(app, vmm_args);
#ifdef SNAPVM_HAVE_IMAGE  // not in the static test-host builds: images are imported on the host
  auto run_image_command = snapvm::cli::register_image_commands(app);
  auto run_guest_command = snapvm::cli::register_guest_command(app);
#else
  std::function<int()> run_guest_command = [] { return -1; };
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
  if (std::string_view(argv[1]) == "help") return snapvm::cli::show_help(app, argc, argv);
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
  if (rc < 0) rc = run_lifecycle_command();
  if (rc < 0) rc = run_jail_command();
  if (rc < 0) rc = run_image_command();
  if (rc < 0) rc = run_guest_command();
  return rc >= 0 ? rc : 1;
}
