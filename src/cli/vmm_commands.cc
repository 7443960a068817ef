#include "cli/vmm_commands.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <optional>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/client.h"
#include "agent/protocol.h"
#include "arch/platform.h"
#include "base/runtime_dir.h"
#include "base/units.h"
#include "cli/bake_command.h"
#include "cli/control_commands.h"
#include "cli/firecracker_command.h"
#include "cli/detach.h"
#include "cli/guest_files.h"
#include "cli/image_vm.h"
#include "cli/pool_command.h"
#include "sandbox/seccomp.h"
#include "vmm/boot_watchdog.h"
#include "vmm/machine.h"
#include "vmm/shutdown_signals.h"
#include "vmm/vm_runner.h"

namespace snapvm::cli {
namespace {

// --seccomp's default: enforce, or $SNAPVM_SECCOMP (tests and discovery runs).
std::string default_seccomp() {
  const char* env = std::getenv("SNAPVM_SECCOMP");
  return env != nullptr && *env != '\0' ? env : "enforce";
}

struct RunOptions {
  std::string kernel, initrd, cmdline = std::string(arch::default_cmdline()), mem = "512M", console;
  std::vector<std::string> disks;
  std::string vsock, name, api;
  uint64_t cid = 3;
  std::vector<std::string> publish, nets;
  uint32_t cpus = 1;
  bool track_dirty = false;
  double silent_boot_s = 60;  // --silent-boot-report
  std::string seccomp = default_seccomp();
  ImageRunOptions image;
  bool detach = false;
};

// --name: a name for files in /run/snapvm (base/runtime_dir.h).
CLI::Validator vm_name_check() {
  return CLI::Validator(
      [](std::string& name) {
        return is_vm_name(name) ? std::string()
                                : "'" + name + "' is no VM name: 1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit";
      },
      "NAME");
}

// -d without --name, or with --api: a usage error (exit 2); a detached VM
// is found by its name (snapvm ps, logs, stop), at /run/snapvm/NAME.sock.
std::optional<int> detach_needs_name(bool detach, const std::string& name, const std::string& api) {
  if (!detach) return std::nullopt;
  if (name.empty()) {
    fmt::print(stderr, "snapvm: -d needs --name: the VM is found by its name (snapvm ps, logs, stop)\n");
    return 2;
  }
  if (!api.empty()) {
    fmt::print(stderr, "snapvm: -d serves the control socket at /run/snapvm/NAME.sock: leave out --api\n");
    return 2;
  }
  return std::nullopt;
}

// What run and restore do first for a named VM: -d's usage checked, the
// name's lock taken into `lock`, and with -d the fork. A status to end
// with, or nullopt to go on and run the VM (here, or as the detached child).
std::optional<int> claim_name(bool detach_it, const std::string& name, const std::string& api, UniqueFd& lock) {
  if (auto usage = detach_needs_name(detach_it, name, api)) return usage;
  if (!name.empty()) {
    auto taken = lock_vm_name(name);
    if (!taken) {
      fmt::print(stderr, "snapvm: {}\n", taken.error().describe());
      return 1;
    }
    lock = std::move(*taken);
  }
  if (detach_it) return detach(name);
  return std::nullopt;
}

// Turns on the per-thread seccomp filters (before any VMM thread starts).
bool start_sandbox(const std::string& mode) {
  if (mode == "off") return true;
  if (mode != "enforce" && mode != "log") {
    fmt::print(stderr, "snapvm: seccomp mode '{}' is not enforce, log or off\n", mode);
    return false;
  }
  auto s = sandbox::enable(mode == "log" ? sandbox::Mode::kLog : sandbox::Mode::kEnforce);
  if (!s) fmt::print(stderr, "snapvm: {}\n", s.error().describe());
  return static_cast<bool>(s);
}

void add_seccomp_option(CLI::App* cmd, std::string& mode) {
  cmd->add_option("--seccomp", mode,
                  "seccomp filters per VMM thread: enforce (a forbidden call ends the VMM with one line), "
                  "log (allow and let the kernel log it), off")
      ->check(CLI::IsMember({"enforce", "log", "off"}))
      ->capture_default_str();
}

// Where the guest console goes: stdout, or a file opened with `mode`.
struct Console {
  std::unique_ptr<FILE, int (*)(FILE*)> file{nullptr, &std::fclose};
  FILE* out = stdout;
  uint64_t cap = 0;  // a detached VM's log: emptied when it holds this much (0: no cap)

  // Writes whole chunks; flushes at line ends so a tail -f sees lines.
  std::function<void(std::string_view)> sink() const {
    FILE* f = out;
    auto written = std::make_shared<std::atomic<uint64_t>>(0);  // any vCPU may write the console
    return [f, written, cap = cap](std::string_view s) {
      if (cap != 0 && written->load() + s.size() > cap) {
        // The log is opened O_APPEND: after the truncation writes begin at 0.
        std::fflush(f);
        if (::ftruncate(::fileno(f), 0) == 0) {
          *written = 0;
          std::fprintf(f, "snapvm: the log reached %llu MiB and was emptied; the guest's console goes on\n",
                       static_cast<unsigned long long>(cap >> 20));
        }
      }
      std::fwrite(s.data(), 1, s.size(), f);
      *written += s.size();
      if (s.find('\n') != std::string_view::npos) std::fflush(f);
    };
  }
};

std::optional<Console> open_console(const std::string& path, const char* mode) {
  Console c;
  if (path.empty()) return c;
  c.file.reset(std::fopen(path.c_str(), mode));
  if (!c.file) {
    fmt::print(stderr, "snapvm: --console {}: cannot open for writing\n", path);
    return std::nullopt;
  }
  c.out = c.file.get();
  return c;
}

// Runs the machine with its control socket (when asked for) and the
// companions' guest work until it ends; the exit line and status are
// every front door's (vmm/exit_reason.h).
int run_until_exit(std::unique_ptr<Machine> machine, RunnerOptions options, FILE* console,
                   const ShutdownSignals& shutdown_signals,
                   const std::function<void(VmRunner&)>& add_companions = {}) {
  options.on_started = [] { sandbox::enter_or_die(sandbox::ThreadKind::kMain); };
  auto runner = VmRunner::start(std::move(machine), std::move(options));
  if (!runner) {
    fmt::print(stderr, "snapvm: {}\n", runner.error().describe());
    return 1;
  }
  std::atomic<int> stopped_by{0};  // the signal that stopped the VM
  (*runner)->add_companion([&runner = **runner, &shutdown_signals, &stopped_by](std::stop_token stop) {
    sandbox::enter_or_die(sandbox::ThreadKind::kControl);
    stopped_by = stop_on_signal(runner, shutdown_signals, stop);
  });
  if (add_companions) add_companions(**runner);
  const ExitReport report = (*runner)->wait_report();
  std::fflush(console);
  if (!report.line.empty()) fmt::print(stderr, "{}\n", report.line);
  if (int sig = stopped_by.load(); sig != 0) {
    // As a shell reports a command a signal ended: 128 + its number.
    fmt::print(stderr, "snapvm: SIG{}: the VM has stopped\n", ::sigabbrev_np(sig));
    return report.status != 0 ? report.status : 128 + sig;
  }
  return report.status;
}

// The guest of a restore wakes with the snapshot's wall clock and random
// state: both are fixed through the agent as soon as it answers. A clone
// given its own MAC takes it here (its driver read the old one at boot),
// and announces itself.
void sync_restored_guest(const std::string& vsock, const std::vector<std::string>& macs, std::stop_token stop) {
  sandbox::enter_or_die(sandbox::ThreadKind::kDevice);
  auto start = std::chrono::steady_clock::now();
  auto r = agent::sync_guest(vsock, std::chrono::seconds(30), macs, stop);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (stop.stop_requested()) return;  // the VM ended first: nothing to say of its clock
  if (!r) {
    fmt::print(stderr, "snapvm: warning: could not set the guest clock and reseed its entropy: {}\n",
               r.error().describe());
    return;
  }
  if (!r->network_error.empty()) fmt::print(stderr, "snapvm: warning: the guest's network: {}\n", r->network_error);
  fmt::print(stderr, "snapvm: guest clock set, entropy reseeded and {} interface(s) announced {:.0f} ms after restore\n",
             r->announced, ms);
}

// [ADDR:]HOSTPORT:GUESTPORT, as docker -p and podman write it.
Result<state::PortForward> parse_publish(const std::string& spec) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t colon = spec.find(':', start);
    parts.push_back(spec.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  if (parts.size() < 2 || parts.size() > 3) {
    return make_error(ErrorCode::kInvalidArgument, "expected [ADDR:]HOSTPORT:GUESTPORT");
  }
  state::PortForward f;
  f.host_address = parts.size() == 3 ? parts[0] : "127.0.0.1";
  auto port = [](const std::string& s, uint32_t max) -> std::optional<uint32_t> {
    uint32_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || v > max) return std::nullopt;
    return v;
  };
  auto host = port(parts[parts.size() - 2], 65535);
  auto guest = port(parts.back(), UINT32_MAX);
  if (!host || !guest) return make_error(ErrorCode::kInvalidArgument, "ports must be numbers (host port up to 65535)");
  f.host_port = *host;
  f.guest_port = *guest;
  return f;
}

// Every -p/--publish; false (after one line on stderr) for a bad one.
bool parse_publishes(const std::vector<std::string>& specs, std::vector<state::PortForward>& out) {
  for (const auto& p : specs) {
    auto f = parse_publish(p);
    if (!f) {
      fmt::print(stderr, "snapvm: --publish {}: {}\n", p, f.error().describe());
      return false;
    }
    out.push_back(*f);
  }
  return true;
}

// tap=NAME[,mac=MAC], as several VMMs spell a tap-backed interface.
Result<MachineConfig::Net> parse_net(const std::string& spec) {
  MachineConfig::Net n;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    std::string item = spec.substr(start, comma - start);
    if (item.rfind("tap=", 0) == 0) {
      n.tap = item.substr(4);
    } else if (item.rfind("mac=", 0) == 0) {
      n.mac = SNAPVM_TRY(virtio::parse_mac(item.substr(4)));
    } else {
      return make_error(ErrorCode::kInvalidArgument, "unknown item `{}` (tap=NAME[,mac=MAC])", item);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (n.tap.empty()) return make_error(ErrorCode::kInvalidArgument, "no tap=NAME");
  return n;
}

// Every --net; false (after one line on stderr) for a bad one.
bool parse_nets(const std::vector<std::string>& specs, std::vector<MachineConfig::Net>& out) {
  for (const auto& spec : specs) {
    auto n = parse_net(spec);
    if (!n) {
      fmt::print(stderr, "snapvm: --net {}: {}\n", spec, n.error().describe());
      return false;
    }
    out.push_back(std::move(*n));
  }
  return true;
}

int run_vm(RunOptions o) {
  if (auto s = default_to_built_guest(o.kernel, o.initrd); !s) {
    fmt::print(stderr, "snapvm: {}\n", s.error().describe());
    return 1;
  }
  UniqueFd name_lock;  // one VM per name, for as long as this process (or its detached child) runs
  if (auto status = claim_name(o.detach, o.name, o.api, name_lock)) return *status;
  // Before any thread: every thread the VM starts inherits the blocked set.
  auto signals = take_shutdown_signals();
  if (!signals) {
    fmt::print(stderr, "snapvm: {}\n", signals.error().describe());
    return 1;
  }
  if (!start_sandbox(o.seccomp)) return 1;
  auto mem = parse_size_flag("--mem", o.mem, 2 << 20);
  if (!mem) {
    fmt::print(stderr, "snapvm: {}\n", mem.error().describe());
    return 2;
  }
  auto console = open_console(o.console, "w");
  if (!console) return 1;
  if (o.detach && o.console.empty()) console->cap = kMaxDetachedLogBytes;
  MachineConfig c;
  c.kernel_path = o.kernel;
  c.initrd_path = o.initrd;
  c.cmdline = o.cmdline;
  c.mem_bytes = *mem;
  c.vcpus = o.cpus;
  c.track_dirty = o.track_dirty;
  for (const auto& d : o.disks) {
    // PATH or PATH,ro (lkvm and cloud-hypervisor users write one or the other).
    auto comma = d.find(',');
    std::string path = d.substr(0, comma), opts = comma == std::string::npos ? "" : d.substr(comma + 1);
    if (opts != "" && opts != "ro" && opts != "readonly" && opts != "rw") {
      fmt::print(stderr, "snapvm: --disk {}: unknown option '{}' (PATH, PATH,ro or PATH,rw)\n", d, opts);
      return 2;  // a usage error
    }
    c.disks.push_back({path, opts == "ro" || opts == "readonly"});
  }
  c.console = console->sink();
  c.guest_cid = o.cid;
  c.vsock_path = o.vsock;
  if (c.vsock_path.empty() && !o.name.empty()) {
    make_runtime_dir();
    c.vsock_path = agent::vsock_path_for(o.name);
  }
  if (!parse_publishes(o.publish, c.publish)) return 2;  // usage errors
  if (!parse_nets(o.nets, c.nets)) return 2;
  std::optional<ImageMachine> image;
  std::optional<image::ImageConsole> image_console;
  if (o.image.name.empty() && (!o.image.command.empty() || !o.image.env.empty() || !o.image.user.empty() ||
                               !o.image.workdir.empty() || o.image.publish_all || o.image.entrypoint)) {
    fmt::print(stderr, "snapvm: a COMMAND, --entrypoint, --env, --user, --workdir and --publish-all need --image\n");
    return 1;
  }
  if (!o.image.name.empty()) {
    auto prepared = prepare_image_machine(c, o.image);
    if (!prepared) {
      fmt::print(stderr, "snapvm: {}\n", prepared.error().describe());
      return 1;
    }
    image = std::move(*prepared);
    if (c.vsock_path.empty()) {  // the agent starts the program: an image VM always has vsock
      make_runtime_dir();
      c.vsock_path = runtime_path(fmt::format("image-{}.vsock", ::getpid()));
    }
    image_console.emplace(c.console);
    c.console = image_console->sink();
  }
  // Whether the guest has said anything, for the report of a silent boot:
  // the outermost sink, which sees what an image's console holds back too.
  auto console_spoke = std::make_shared<std::atomic<bool>>(false);
  c.console = [sink = c.console, console_spoke](std::string_view s) {
    console_spoke->store(true, std::memory_order_relaxed);
    sink(s);
  };
  // The build (the kernel, initrd and disks parsed) and every thread it
  // starts run under the build filter from here on.
  sandbox::enter_or_die(sandbox::ThreadKind::kBuild);
  auto machine = Machine::create(c);
  if (!machine) {
    fmt::print(stderr, "snapvm: {}\n", machine.error().describe());
    return 1;
  }
  if (image) {
    for (const auto& f : (*machine)->port_forwards()) {
      fmt::print(stderr, "snapvm: {}:{} -> port {} of {}\n", f.host_address, f.host_port,
                 f.guest_port - agent::kTcpRelayBase, image->image.name);
    }
  }
  auto companions = [&](VmRunner& runner) {
    if (o.silent_boot_s > 0) {
      auto quiet_for = std::chrono::milliseconds(static_cast<int64_t>(o.silent_boot_s * 1000));
      runner.add_companion([&runner, console_spoke, quiet_for](std::stop_token stop) {
        sandbox::enter_or_die(sandbox::ThreadKind::kControl);
        report_silent_boot(runner, *console_spoke, quiet_for, stop,
                           [](const std::string& line) { fmt::print(stderr, "snapvm: warning: {}\n", line); });
      });
    }
    if (!image) return;
    runner.add_companion([&runner, start = image->start, vsock = c.vsock_path](std::stop_token stop) {
      sandbox::enter_or_die(sandbox::ThreadKind::kDevice);
      auto pid = agent::start_program(vsock, start, std::chrono::seconds(60), stop);
      if (!pid && !stop.stop_requested()) {
        fmt::print(stderr, "snapvm: {}\n", pid.error().describe());
        runner.request_stop();
      }
    });
  };
  RunnerOptions runner;
  runner.control_socket = o.api.empty() && !o.name.empty() ? control_path_for(o.name) : o.api;
  runner.name = o.name;
  runner.origin = o.image.name.empty() ? "kernel " + std::filesystem::absolute(o.kernel).string() : "image " + o.image.name;
  int rc = run_until_exit(std::move(*machine), std::move(runner), console->out, *signals, companions);
  if (image_console && rc == 0) {
    // Like `docker run`: the program's status is the command's.
    if (auto status = image_console->exit_status()) return *status;
    return 1;  // stopped before the program ended (or it never started: said above)
  }
  return rc;
}

struct RestoreCliOptions {
  std::string file, vsock, api, name, console, allow_dir, seccomp = default_seccomp();
  std::vector<std::string> disks, publish, nets;
  bool paused = false;
  bool no_sync = false;
  bool track_dirty = false;
  bool json_timings = false;
  bool detach = false;
};

int restore_vm(const RestoreCliOptions& o) {
  UniqueFd name_lock;  // one VM per name, for as long as this process (or its detached child) runs
  if (auto status = claim_name(o.detach, o.name, o.api, name_lock)) return *status;
  auto signals = take_shutdown_signals();  // before any thread, as in run_vm
  if (!signals) {
    fmt::print(stderr, "snapvm: {}\n", signals.error().describe());
    return 1;
  }
  if (!start_sandbox(o.seccomp)) return 1;
  auto console = open_console(o.console, "a");
  if (!console) return 1;
  if (o.detach && o.console.empty()) console->cap = kMaxDetachedLogBytes;
  RestoreOptions ro;
  ro.vsock_path = o.vsock.empty() && !o.name.empty() ? agent::vsock_path_for(o.name) : o.vsock;
  if (!o.name.empty()) make_runtime_dir();
  ro.disks = o.disks;
  ro.track_dirty = o.track_dirty;
  ro.allowed_dir = o.allow_dir;
  if (!parse_publishes(o.publish, ro.publish)) return 2;  // usage errors
  if (!parse_nets(o.nets, ro.nets)) return 2;
  ro.console = console->sink();
  RestoreTimings t;
  // The snapshot is parsed, and every thread started, under the build filter.
  sandbox::enter_or_die(sandbox::ThreadKind::kBuild);
  auto machine = Machine::restore(o.file, ro, &t);
  if (!machine) {
    fmt::print(stderr, "snapvm: {}\n", machine.error().describe());
    return 1;
  }
  if (o.json_timings) {
    // For tools (the benchmarks): one JSON object on one line, in milliseconds.
    nlohmann::ordered_json line{{"restored", o.file},         {"total_ms", t.total_us / 1000},
                        {"open_ms", t.open_us / 1000}, {"map_ram_ms", t.map_ram_us / 1000},
                        {"vcpus_ms", t.vcpus_us / 1000}, {"interrupt_controller_ms", t.arch_vm_us / 1000},
                        {"devices_ms", t.devices_us / 1000}};
    fmt::print(stderr, "{}\n", line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
  } else {
    fmt::print(stderr,
               "snapvm: restored {} in {:.2f} ms (open and validate {:.2f}, map RAM {:.3f}, VM and vCPUs {:.2f}, "
               "interrupt controller {:.2f}, devices {:.2f})\n",
               o.file, t.total_us / 1000, t.open_us / 1000, t.map_ram_us / 1000, t.vcpus_us / 1000,
               t.arch_vm_us / 1000, t.devices_us / 1000);
  }
  if (o.paused) (*machine)->start_paused();
  std::string vsock = ro.vsock_path.empty() ? (*machine)->vsock_path() : ro.vsock_path;
  std::vector<std::string> macs;
  for (const auto& n : ro.nets) macs.push_back(n.mac ? virtio::format_mac(*n.mac) : "");
  auto sync = [&](VmRunner& runner) {
    if (o.paused || o.no_sync || vsock.empty()) return;
    runner.add_companion([vsock, macs](std::stop_token stop) { sync_restored_guest(vsock, macs, stop); });
  };
  RunnerOptions runner;
  runner.control_socket = o.api.empty() && !o.name.empty() ? control_path_for(o.name) : o.api;
  runner.name = o.name;
  runner.origin = "snapshot " + std::filesystem::absolute(o.file).string();
  return run_until_exit(std::move(*machine), std::move(runner), console->out, *signals, sync);
}

}  // namespace

std::function<int()> register_vmm_commands(CLI::App& app) {
  auto ro = std::make_shared<RestoreCliOptions>();
  auto* restore = app.add_subcommand("restore", "Start a VM from a snapshot in this process (RAM mapped copy-on-write)");
  restore->add_option("FILE", ro->file, "snapshot file")->required();
  restore->add_option("--vsock", ro->vsock, "this clone's vsock socket (default: the snapshot's, if inside --allow-dir)");
  restore->add_option("--name", ro->name, "name the VM: /run/snapvm/NAME.sock (control) and NAME.vsock")
      ->check(vm_name_check());
  restore->add_flag("-d,--detach", ro->detach,
                    "run in the background (needs --name): console and messages go to /run/snapvm/NAME.log "
                    "(snapvm logs); returns once the VM answers on its control socket");
  restore->add_option("--api", ro->api, "control socket");
  restore->add_option("--console", ro->console, "append the guest console to this file instead of stdout");
  restore->add_option("--disk", ro->disks, "disk images replacing the snapshot's, in order; repeatable "
                      "(a disk saved read-only stays read-only)");
  restore->add_option("--allow-dir", ro->allow_dir,
                      "the snapshot's own disk and socket paths are used only inside this directory "
                      "(default: the snapshot's directory)");
  restore->add_option("--net", ro->nets,
                      "tap=NAME[,mac=MAC]: this clone's tap (and MAC) for each of the snapshot's network interfaces, "
                      "in order; needed for each (the MAC stays the snapshot's unless given)");
  restore->add_option("-p,--publish", ro->publish,
                      "[ADDR:]HOSTPORT:GUESTPORT: a host TCP listener forwarded to a guest vsock port; repeatable "
                      "(the snapshot's forwards are not re-bound)");
  restore->add_flag("--paused", ro->paused, "restore without running (resume through the control socket)");
  restore->add_flag("--no-sync", ro->no_sync,
                    "leave the guest's wall clock and random state as saved (by default the agent sets the clock "
                    "and reseeds, so clones never share random numbers)");
  restore->add_flag("--track-dirty", ro->track_dirty,
                    "track the pages the guest and devices write from now on, so `snapvm snapshot --diff-from FILE` "
                    "can write only what changed since this snapshot");

  restore->add_flag("--json-timings", ro->json_timings,
                    "print the restore's timings as one JSON line on stderr (total_ms, open_ms, map_ram_ms, "
                    "vcpus_ms, interrupt_controller_ms, devices_ms) instead of the sentence, for tools");
  add_seccomp_option(restore, ro->seccomp);

  auto o = std::make_shared<RunOptions>();
  auto* run = app.add_subcommand("run", "Boot a Linux guest (" + std::string(arch::name()) + ")");
  run->footer(
      "The guest console (" + std::string(arch::console_description()) +
      ") goes to stdout or --console FILE. The VM ends with exit status 0\n"
      "when the guest powers off.\n\n"
      "Example:\n"
      "  snapvm guest build      # once: Debian's kernel and snapvm's initramfs\n"
      "  snapvm run --mem 512M --cpus 4 --name demo\n"
      "  snapvm run --kernel " + std::string(arch::kernel_file_example()) +
      " --initrd initrd.cpio --mem 512M --cpus 4");
  run->add_option("-k,--kernel", o->kernel,
                  std::string(arch::kernel_description()) + " (default: the one `snapvm guest build` made)");
  run->add_option("--initrd", o->initrd,
                  "initial ramdisk (cpio archive; default with the default kernel: snapvm's, from `snapvm guest build`)");
  run->add_option("-m,--mem", o->mem, "guest RAM, e.g. 512M, 512MiB or 2g (a multiple of 2 MiB)")->capture_default_str();
  run->add_option("-c,--cpus", o->cpus, "vCPU count")->capture_default_str();
  run->add_option("--cmdline", o->cmdline, "kernel command line")->capture_default_str();
  run->add_option("--console", o->console, "write the guest console to this file instead of stdout");
  run->add_option("--disk", o->disks, "raw disk image as virtio-blk (/dev/vda, vdb, ...): PATH or PATH,ro; repeatable");
  run->add_option("--vsock", o->vsock, "virtio-vsock with its host side on this Unix socket (Firecracker's CONNECT protocol)");
  run->add_option("--name", o->name, "name the VM: /run/snapvm/NAME.sock (control) and NAME.vsock")
      ->check(vm_name_check());
  run->add_flag("-d,--detach", o->detach,
                "run in the background (needs --name): console and messages go to /run/snapvm/NAME.log "
                "(snapvm logs); returns once the VM answers on its control socket");
  run->add_option("--api", o->api, "control socket (JSON: pause, resume, snapshot, info)");
  run->add_option("--cid", o->cid, "the guest's vsock CID")->capture_default_str();
  run->add_option("--net", o->nets,
                  "tap=NAME[,mac=MAC]: a virtio-net interface (eth0, eth1, ...) on a host tap; repeatable. The guest "
                  "init configures it from ip=ADDR::GATEWAY:NETMASK::eth0:off on the command line");
  run->add_option("-p,--publish", o->publish, "[ADDR:]HOSTPORT:GUESTPORT: a host TCP listener (127.0.0.1 by default) "
                  "forwarded to a guest vsock port; repeatable");
  run->add_option("--silent-boot-report", o->silent_boot_s,
                  "seconds after which a guest that has printed nothing on its console is reported once, with where "
                  "its vCPUs are (0: never)")
      ->capture_default_str();
  run->add_flag("--track-dirty", o->track_dirty,
                "track the pages the guest and devices write from boot on, for diff snapshots after the first full one");
  run->add_option("--image", o->image.name,
                  "run this image of the store (snapvm image import): its root filesystem as /dev/vda, its program "
                  "started by the agent; the command's status is the program's, -p names its TCP ports");
  run->add_option("--store", o->image.store, "the image store (SNAPVM_IMAGE_STORE)")->capture_default_str();
  run->add_option("-e,--env", o->image.env, "with --image: NAME=VALUE for the program; repeatable");
  run->add_option("-u,--user", o->image.user, "with --image: the program's user (uid[:gid] or name[:group])");
  run->add_option("-w,--workdir", o->image.workdir, "with --image: the program's working directory");
  run->add_flag("-P,--publish-all", o->image.publish_all,
                "with --image: each exposed port of the image on a free host port (printed)");
  run->add_option("--entrypoint", o->image.entrypoint, "with --image: replaces the image's entrypoint (\"\": none)");
  run->add_option("COMMAND", o->image.command, "with --image: replaces the image's cmd (after --)");
  add_seccomp_option(run, o->seccomp);
  auto run_firecracker = register_firecracker_command(app);
  auto run_bake = register_bake_command(app);
  auto run_pool = register_pool_command(app);
  return [run, o, restore, ro, run_firecracker, run_bake, run_pool]() -> int {
    if (*run) return run_vm(*o);
    if (*restore) return restore_vm(*ro);
    if (int rc = run_bake(); rc >= 0) return rc;
    if (int rc = run_pool(); rc >= 0) return rc;
    return run_firecracker();
  };
}

}  // namespace snapvm::cli
