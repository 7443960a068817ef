#include "cli/bake_command.h"

#include <atomic>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <chrono>
#include <cstdio>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "agent/protocol.h"
#include "arch/platform.h"
#include "base/units.h"
#include "cli/guest_files.h"
#include "cli/image_vm.h"
#include "sandbox/seccomp.h"
#include "vmm/machine.h"
#include "vmm/vm_runner.h"
#include "vmm/shutdown_signals.h"

namespace snapvm::cli {
namespace {

struct BakeOptions {
  ImageRunOptions image;
  std::string out, base, kernel, initrd, mem = "256M", console, cmdline = std::string(arch::default_cmdline());
  uint32_t cpus = 1;
  std::optional<uint16_t> ready_port;
  std::string ready_cmd;
  double timeout_s = 120;
  std::string seccomp = "enforce";
};

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Boots the image, or restores the cached base of it (--base FILE that
// exists): a snapshot of this image booted, made by an earlier bake.
Result<std::unique_ptr<Machine>> start_machine(const BakeOptions& o, MachineConfig& c, const image::StoredImage& image,
                                               bool from_base) {
  if (!from_base) {
    c.track_dirty = !o.base.empty();  // the warm snapshot is then a diff over the base
    return Machine::create(c);
  }
  // A base older than the image was made from an image since replaced.
  struct stat base_st {}, rootfs_st {};
  if (::stat(o.base.c_str(), &base_st) != 0 || ::stat(image.rootfs.c_str(), &rootfs_st) != 0 ||
      base_st.st_mtim.tv_sec < rootfs_st.st_mtim.tv_sec) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "--base {} is older than image `{}` (re-imported since): delete it to make a new one", o.base,
                      image.name);
  }
  RestoreOptions ro;
  ro.vsock_path = c.vsock_path;
  ro.allowed_dir = o.image.store;  // the base names the image's root filesystem there
  ro.console = c.console;
  ro.track_dirty = true;
  auto vm = SNAPVM_TRY(Machine::restore(o.base, ro));
  auto disks = vm->disks();
  if (disks.empty() || std::filesystem::path(disks[0].path).lexically_normal() !=
                           std::filesystem::path(image.rootfs).lexically_normal()) {
    return make_error(ErrorCode::kFailedPrecondition, "--base {} was made from another image than `{}`", o.base,
                      image.name);
  }
  return vm;
}

int run_bake(BakeOptions o) {
  if (o.ready_port && !o.ready_cmd.empty()) {
    fmt::print(stderr, "snapvm bake: --ready-port and --ready-cmd exclude each other\n");
    return 2;
  }
  if (auto s = default_to_built_guest(o.kernel, o.initrd); !s) {
    fmt::print(stderr, "snapvm bake: {}\n", s.error().describe());
    return 1;
  }
  // Before any thread, as in run: a signal stops the bake through the VM's
  // normal path, which removes the bake's vsock socket.
  auto signals = take_shutdown_signals();
  if (!signals) {
    fmt::print(stderr, "snapvm bake: {}\n", signals.error().describe());
    return 1;
  }
  auto mem = parse_size_flag("--mem", o.mem, 2 << 20);
  if (!mem) {
    fmt::print(stderr, "snapvm: {}\n", mem.error().describe());
    return 2;
  }
  // The snapshot (and the socket the bake uses beside it) go into OUT's
  // directory, and --base's: say so at once if one does not exist.
  for (const auto& [flag, file] : {std::pair<const char*, const std::string&>{"OUT", o.out}, {"--base", o.base}}) {
    if (file.empty()) continue;
    const std::filesystem::path dir = std::filesystem::path(file).parent_path();
    std::error_code ec;
    if (!dir.empty() && !std::filesystem::is_directory(dir, ec)) {
      fmt::print(stderr, "snapvm: bake: {} {}: directory {} does not exist\n", flag, file, dir.string());
      return 1;
    }
  }
  if (o.seccomp != "off") {
    auto s = sandbox::enable(o.seccomp == "log" ? sandbox::Mode::kLog : sandbox::Mode::kEnforce);
    if (!s) {
      fmt::print(stderr, "snapvm bake: {}\n", s.error().describe());
      return 1;
    }
  }
  std::unique_ptr<FILE, int (*)(FILE*)> console_file(nullptr, &std::fclose);
  if (!o.console.empty()) {
    console_file.reset(std::fopen(o.console.c_str(), "w"));
    if (!console_file) {
      fmt::print(stderr, "snapvm bake: --console {}: cannot open for writing\n", o.console);
      return 1;
    }
  }
  FILE* console_out = console_file ? console_file.get() : stderr;
  MachineConfig c;
  c.kernel_path = o.kernel;
  c.initrd_path = o.initrd;
  c.cmdline = o.cmdline;
  c.mem_bytes = *mem;
  c.vcpus = o.cpus;
  auto prepared = prepare_image_machine(c, o.image);
  if (!prepared) {
    fmt::print(stderr, "snapvm bake: {}\n", prepared.error().describe());
    return 1;
  }
  // The program's exposed ports are relayed in every clone; the first is
  // what readiness waits for unless told otherwise.
  for (uint16_t p : prepared->image.config.exposed_tcp_ports) prepared->start.tcp_ports.push_back(p);
  if (!o.ready_port && o.ready_cmd.empty() && !prepared->image.config.exposed_tcp_ports.empty()) {
    o.ready_port = prepared->image.config.exposed_tcp_ports.front();
  }
  if (o.ready_port) prepared->start.tcp_ports.push_back(*o.ready_port);
  // Clones are restored elsewhere with sockets of their own; this one only
  // lives while baking, next to the snapshot.
  c.vsock_path = o.out + ".bake.vsock";
  ::unlink(c.vsock_path.c_str());
  const bool from_base = !o.base.empty() && ::access(o.base.c_str(), F_OK) == 0;
  image::ImageConsole console([console_out](std::string_view s) {
    std::fwrite(s.data(), 1, s.size(), console_out);
    std::fflush(console_out);
  });
  c.console = console.sink();

  const auto t0 = std::chrono::steady_clock::now();
  auto machine = start_machine(o, c, prepared->image, from_base);
  if (!machine) {
    fmt::print(stderr, "snapvm bake: {}\n", machine.error().describe());
    return 1;
  }
  RunnerOptions run_options;
  run_options.on_started = [] { sandbox::enter_or_die(sandbox::ThreadKind::kMain); };
  auto runner = VmRunner::start(std::move(*machine), std::move(run_options));
  if (!runner) {
    fmt::print(stderr, "snapvm bake: {}\n", runner.error().describe());
    return 1;
  }
  Machine& vm = (*runner)->machine();
  std::atomic<int> stopped_by{0};
  (*runner)->add_companion([&runner = **runner, &signals, &stopped_by](std::stop_token stop) {
    sandbox::enter_or_die(sandbox::ThreadKind::kControl);
    stopped_by = stop_on_signal(runner, *signals, stop);
  });
  const char* began = from_base ? "the base's restore began" : "boot began";
  int rc = 1;  // the baker's; read once wait() has joined it
  (*runner)->add_companion([&](std::stop_token ended) {
    sandbox::enter_or_die(sandbox::ThreadKind::kControl);
    auto stop = [&](const std::string& why) {
      fmt::print(stderr, "snapvm bake: {}\n", why);
      vm.request_stop();
    };
    if (from_base) {
      // A clone of the base: its own clock and entropy before the program starts.
      auto sync = agent::sync_guest(c.vsock_path, std::chrono::seconds(60), {}, ended);
      if (!sync) return stop("the base's agent: " + sync.error().describe());
    } else if (!o.base.empty()) {
      // The booted image before its program runs, for later bakes to start from.
      auto up = wait_until_ready(c.vsock_path, Readiness{std::nullopt, "true", false}, prepared->image,
                                 std::chrono::seconds(120), [&] { return ended.stop_requested(); });
      if (!up) return stop(up.error().describe());
      auto base = vm.snapshot_live(o.base, "", true);
      if (!base) return stop("base snapshot: " + base.error().describe());
      fmt::print(stderr, "snapvm bake: base {} (the booted image) written {:.0f} ms after boot began\n", o.base,
                 ms_since(t0));
    }
    auto pid = agent::start_program(c.vsock_path, prepared->start, std::chrono::seconds(60), ended);
    if (!pid) return stop(pid.error().describe());
    const double started_ms = ms_since(t0);
    fmt::print(stderr, "snapvm bake: {} started (guest pid {}) {:.0f} ms after {}\n",
               fmt::join(prepared->start.argv, " "), *pid, started_ms, began);
    Readiness ready{o.ready_port, o.ready_cmd};
    auto ok = wait_until_ready(c.vsock_path, ready, prepared->image,
                               std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)),
                               [&] { return ended.stop_requested(); });
    if (!ok) return stop(ok.error().describe());
    const double ready_ms = ms_since(t0);
    // Over the base, only the pages the program's start wrote are new.
    auto snap = vm.snapshot_live(o.out, o.base, false);
    if (!snap) return stop("snapshot: " + snap.error().describe());
    fmt::print(stderr,
               "snapvm bake: ready {:.0f} ms after {} ({}); snapshot {} written in {:.0f} ms "
               "({:.1f} MiB of RAM in use{})\n",
               ready_ms, began, o.ready_port ? fmt::format("port {}", *o.ready_port)
                                      : o.ready_cmd.empty() ? std::string("no readiness check") : "--ready-cmd",
               o.out, snap->total_ms, snap->stats.data_bytes / 1048576.0,
               o.base.empty() ? std::string()
                              : fmt::format("; a diff over the base: {:.1f} MiB written{}",
                                            snap->stats.written_bytes / 1048576.0,
                                            snap->stats.reflinked ? ", the rest reflinked" : ""));
    rc = 0;
    vm.request_stop();
  });
  auto exit = (*runner)->wait();
  if (int sig = stopped_by.load(); sig != 0 && rc != 0) {  // a signal after the snapshot changes nothing
    fmt::print(stderr, "snapvm bake: SIG{}: stopped before the snapshot was written\n", ::sigabbrev_np(sig));
    return 128 + sig;
  }
  if (!exit) {
    fmt::print(stderr, "snapvm bake: {}\n", exit.error().describe());
    return 1;
  }
  if (*exit != ExitReason::kStopped) {
    auto status = console.exit_status();
    fmt::print(stderr, "snapvm bake: the VM ended ({}) before the snapshot{}\n", to_string(*exit),
               status ? fmt::format("; the program exited with status {}", *status) : std::string());
    return 1;
  }
  return rc;
}

}  // namespace

std::function<int()> register_bake_command(CLI::App& app) {
  auto o = std::make_shared<BakeOptions>();
  auto* bake = app.add_subcommand(
      "bake", "Boot an image, start its program, wait until it is ready and write a warm snapshot to clone from");
  bake->footer(
      "Readiness: --ready-port P (the program accepts on TCP port P in the guest), --ready-cmd CMD (sh -c CMD\n"
      "exits 0 in the image), else the image's first exposed port, else none.\n\n"
      "Example:\n"
      "  snapvm bake web web.snap --ready-port 8080\n"
      "  snapvm pool serve web.snap --size 4 --socket /run/snapvm/web.pool");
  bake->add_option("IMAGE", o->image.name, "image in the store (snapvm image import)")->required();
  bake->add_option("OUT", o->out, "snapshot file to write")->required();
  bake->add_option("-k,--kernel", o->kernel,
                   std::string(arch::kernel_description()) + " (default: the one `snapvm guest build` made)");
  bake->add_option("--initrd", o->initrd, "snapvm's guest initramfs (default: the one `snapvm guest build` made)");
  bake->add_option("-m,--mem", o->mem, "guest RAM")->capture_default_str();
  bake->add_option("-c,--cpus", o->cpus, "vCPU count")->capture_default_str();
  bake->add_option("--cmdline", o->cmdline, "kernel command line")->capture_default_str();
  bake->add_option("--store", o->image.store, "the image store (SNAPVM_IMAGE_STORE)")->capture_default_str();
  bake->add_option("-e,--env", o->image.env, "NAME=VALUE for the program; repeatable");
  bake->add_option("-u,--user", o->image.user, "the program's user (uid[:gid] or name[:group])");
  bake->add_option("-w,--workdir", o->image.workdir, "the program's working directory");
  bake->add_option("--ready-port", o->ready_port, "ready when the program accepts on this TCP port");
  bake->add_option("--ready-cmd", o->ready_cmd, "ready when `sh -c CMD` exits 0 in the image");
  bake->add_option("--base", o->base,
                   "a snapshot of the booted image before its program starts: made on the first bake, restored "
                   "instead of booting by the next ones (same image, kernel and settings), and the warm snapshot "
                   "is written as a diff over it");
  bake->add_option("--timeout", o->timeout_s, "seconds to wait for readiness")->capture_default_str();
  bake->add_option("--console", o->console, "the guest console to this file (default: stderr)");
  bake->add_option("--seccomp", o->seccomp, "seccomp filters per VMM thread: enforce, log, off")
      ->check(CLI::IsMember({"enforce", "log", "off"}))
      ->capture_default_str();
  bake->add_option("--entrypoint", o->image.entrypoint, "replaces the image's entrypoint (\"\": none)");
  bake->add_option("COMMAND", o->image.command, "replaces the image's cmd (after --)");
  return [bake, o]() -> int { return bake->parsed() ? run_bake(*o) : -1; };
}

}  // namespace snapvm::cli
