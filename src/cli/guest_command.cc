#include "cli/guest_command.h"

#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/guest_files.h"

extern char** environ;

namespace snapvm::cli {
namespace {

// Debian's name for the architecture this snapvm runs guests of.
#if defined(__aarch64__)
constexpr const char* kDebianArch = "arm64";
#else
constexpr const char* kDebianArch = "amd64";
#endif

struct GuestOptions {
  std::string dir = guest_dir(), kernel_package;
  bool json = false;
};

// Runs build-guest.sh (guest/tools) with the guest init this snapvm was
// built with; its progress lines go to stderr as it writes them.
int run_guest_build(const GuestOptions& o) {
  const std::string script = find_support_file("build-guest.sh");
  const std::string pack = find_support_file("pack-guest.sh");
  const std::string init = find_support_file("snapvm-guest-init");
  if (script.empty() || pack.empty() || init.empty()) {
    return report_error(
        "guest build: build-guest.sh, pack-guest.sh or snapvm-guest-init is missing next to this snapvm "
        "(installed: /usr/lib/snapvm/; a build tree: build/lib/snapvm/ and build/bin/)",
        false);
  }
  // bash by its path, without the startup files a caller's environment can
  // name (BASH_ENV, ENV): the script is ours, run as whoever runs snapvm.
  std::vector<std::string> args = {"/bin/bash", script, kDebianArch, init, pack, o.dir};
  if (!o.kernel_package.empty()) args.push_back(o.kernel_package);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view var(*e);
    if (!var.starts_with("BASH_ENV=") && !var.starts_with("ENV=") && !var.starts_with("BASH_FUNC_")) env.push_back(*e);
  }
  env.push_back(nullptr);
  if (int err = ::posix_spawn(&pid, "/bin/bash", nullptr, nullptr, argv.data(), env.data()); err != 0) {
    return report_error(fmt::format("guest build: cannot run {}: {}", script, std::strerror(err)), false);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status)) return 1;
  if (WEXITSTATUS(status) != 0) return WEXITSTATUS(status);
  // What the script wrote is checked as run will check it.
  auto g = load_guest_files(o.dir);
  if (!g) return report_error("guest build: " + g.error().describe(), false);
  return 0;
}

int run_guest_show(const GuestOptions& o) {
  auto g = load_guest_files(o.dir);
  if (!g) return report_error(g.error().describe(), o.json);
  if (o.json) {
    nlohmann::json j = {{"dir", g->dir}, {"kernel", g->kernel}, {"initrd", g->initrd}, {"verified", true}};
    for (const auto& [k, v] : g->manifest) j[k] = v;
    fmt::print("{}\n", j.dump());
    return 0;
  }
  fmt::print("kernel   {} ({} {})\n", g->kernel, g->manifest["kernel_package"], g->manifest["kernel_version"]);
  fmt::print("initrd   {} (snapvm's init and agent, busybox {})\n", g->initrd, g->manifest["busybox_version"]);
  fmt::print("built    {}; SHA-256 sums match\n", g->manifest["built"]);
  return 0;
}

}  // namespace

std::function<int()> register_guest_command(CLI::App& app) {
  auto o = std::make_shared<GuestOptions>();
  auto* guest = app.add_subcommand(
      "guest", "The guest kernel and initramfs run, bake and image runs boot when no --kernel is given");
  guest->require_subcommand(1);
  auto* build = guest->add_subcommand(
      "build",
      "Fetch Debian's kernel for this architecture through apt and pack an initramfs with snapvm's init and "
      "agent, busybox and the kernel's virtio modules (apt checks the packages' digests; the files' SHA-256 sums "
      "are checked again before each boot). Up to date: does nothing");
  build->add_option("--kernel-package", o->kernel_package,
                    "a Debian kernel package (default: the one linux-image-" + std::string(kDebianArch) +
                        " depends on)");
  auto* show = guest->add_subcommand("show", "Where the built guest is, what it holds, and whether its sums match");
  show->add_flag("--json", o->json, "the report (or the error) as one JSON object on stdout");
  for (auto* c : {build, show}) {
    c->add_option("--dir", o->dir, "the guest's folder (SNAPVM_GUEST_DIR)")->capture_default_str();
  }
  return [o, build, show]() -> int {
    if (build->parsed()) return run_guest_build(*o);
    if (show->parsed()) return run_guest_show(*o);
    return -1;
  };
}

}  // namespace snapvm::cli
