#include "cli/jail_command.h"

#include <fmt/format.h>

#include <memory>

#include "base/units.h"
#include "sandbox/jail.h"

namespace snapvm::cli {
namespace {

struct JailOptions {
  sandbox::JailConfig config;
  std::vector<std::string> files;
  std::string memory;
  double cpus = 0;
  uint64_t pids = 0;
};

// HOST[:JAILPATH][,rw]; JAILPATH defaults to /BASENAME.
Result<sandbox::JailFile> parse_file(std::string spec) {
  sandbox::JailFile f;
  if (spec.size() > 3 && spec.compare(spec.size() - 3, 3, ",rw") == 0) {
    f.writable = true;
    spec.resize(spec.size() - 3);
  }
  auto colon = spec.find(':');
  f.host_path = spec.substr(0, colon);
  if (colon != std::string::npos) {
    f.jail_path = spec.substr(colon + 1);
  } else {
    auto slash = f.host_path.find_last_of('/');
    f.jail_path = "/" + (slash == std::string::npos ? f.host_path : f.host_path.substr(slash + 1));
  }
  if (f.host_path.empty()) return make_error(ErrorCode::kInvalidArgument, "--file '{}' names no host file", spec);
  return f;
}

// The usage line says what follows the jailer's options.
class JailFormatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App* app, std::string name) const override {
    std::string usage = CLI::Formatter::make_usage(app, std::move(name));
    while (!usage.empty() && usage.back() == '\n') usage.pop_back();
    return usage + " -- run|restore|firecracker [ARGS...]\n";
  }
};

}  // namespace

int split_jail_args(int argc, char** argv, std::vector<std::string>& vmm_args) {
  if (argc < 2 || std::string(argv[1]) != "jail") return argc;
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--") {
      vmm_args.assign(argv + i + 1, argv + argc);
      return i;
    }
  }
  return argc;
}

std::function<int()> register_jail_command(CLI::App& app, const std::vector<std::string>& vmm_args) {
  auto o = std::make_shared<JailOptions>();
  auto* jail = app.add_subcommand(
      "jail", "Run `snapvm run|restore|firecracker ...` confined: own mount, PID, network, IPC and UTS namespaces, "
              "pivot_root into ROOT/ID/root, an unprivileged uid/gid, cgroup v2 limits, no core dumps");
  jail->formatter(std::make_shared<JailFormatter>());
  jail->footer(
      "Paths after -- are inside the jail; its sockets appear on the host under ROOT/ID/root.\n"
      "Under firecracker, so do the paths in API bodies (give the files with --file), and the API\n"
      "socket (--api-sock, default /run/firecracker.socket) is made inside the jail.\n\n"
      "Examples:\n"
      "  snapvm jail --id web --uid 1000 --gid 1000 --file ./web.snap --memory 1G --cpus 1 -- \\\n"
      "      restore /web.snap --vsock /web.vsock --api /web.sock\n"
      "  snapvm jail --id fc --uid 1000 --gid 1000 --file ./vmlinux --file ./rootfs.ext4,rw -- \\\n"
      "      firecracker --api-sock /fc.sock    # the API at ROOT/fc/root/fc.sock; kernel_image_path /vmlinux");
  jail->add_option("--id", o->config.id, "the VM's name: its jail is ROOT/ID")->required();
  jail->add_option("--uid", o->config.uid, "unprivileged uid the VMM runs as")->required();
  jail->add_option("--gid", o->config.gid, "unprivileged gid the VMM runs as")->required();
  jail->add_option("--root", o->config.root, "where jails are made")->capture_default_str();
  jail->add_option("--file", o->files,
                   "HOST[:JAILPATH][,rw]: a file or directory the VMM may see (read-only unless ,rw); "
                   "JAILPATH defaults to /BASENAME; repeatable")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  jail->add_flag("--net", o->config.network, "keep the host's network namespace (port forwards on host addresses)");
  jail->add_option("--memory", o->memory, "cgroup memory.max, e.g. 1G");
  jail->add_option("--cpus", o->cpus, "cgroup cpu.max in CPUs, e.g. 1.5");
  jail->add_option("--pids", o->pids, "cgroup pids.max");
  jail->add_option("--nofile", o->config.max_open_files, "RLIMIT_NOFILE")->capture_default_str();
  jail->add_option("--cgroup-root", o->config.cgroup_root, "where cgroup v2 is mounted")->capture_default_str();

  return [jail, o, &vmm_args]() -> int {
    if (!*jail) return -1;
    o->config.argv = vmm_args;
    for (const auto& spec : o->files) {
      auto f = parse_file(spec);
      if (!f) {
        fmt::print(stderr, "snapvm: {}\n", f.error().describe());
        return 1;
      }
      o->config.files.push_back(*f);
    }
    if (!o->memory.empty()) {
      auto m = parse_size_flag("--memory", o->memory);
      if (!m) {
        fmt::print(stderr, "snapvm: {}\n", m.error().describe());
        return 2;
      }
      o->config.memory_max = *m;
    }
    if (o->cpus > 0) o->config.cpus = o->cpus;
    if (o->pids > 0) o->config.pids_max = o->pids;
    auto rc = sandbox::run_jailed(o->config);
    if (!rc) {
      fmt::print(stderr, "snapvm: jail: {}\n", rc.error().describe());
      return 1;
    }
    return *rc;
  };
}

}  // namespace snapvm::cli
