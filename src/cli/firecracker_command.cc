// `snapvm firecracker`: Firecracker's command line and REST API on a Unix
// socket (docs/firecracker-api.md), for clients that drive Firecracker:
// firectl, firecracker-go-sdk, Kata Containers. A snapvm binary installed
// under the name `firecracker` behaves the same way.
#include "cli/firecracker_command.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "arch/platform.h"
#include "base/file_io.h"
#include "base/version.h"
#include "firecracker/api.h"
#include "firecracker/api_paths.h"
#include "firecracker/http_server.h"
#include "firecracker/machine_backend.h"
#include "sandbox/seccomp.h"
#include "vmm/shutdown_signals.h"

namespace snapvm::cli {
namespace {

struct FirecrackerOptions {
  std::string api_sock = "/run/firecracker.socket";  // Firecracker's default
  std::string id = "anonymous-instance";
  std::string config_file, log_path, level = "Info", metrics_path, seccomp_filter;
  bool no_api = false, no_seccomp = false, boot_timer = false, show_level = false, show_log_origin = false;
  bool version = false;
  uint64_t max_payload = firecracker::kMaxBodyBytes;
  // snapvm's own: a Uffd page server that leaves faults unread this long
  // ends the VMM (vmm/page_server_watchdog.h); 0 waits forever, as Firecracker.
  double page_fault_timeout_s = 30;
  // Passed by Firecracker's jailer for its start-up metrics; taken, unused.
  uint64_t start_time_us = 0, start_time_cpu_us = 0, parent_cpu_time_us = 0;
};

int fail(const std::string& message) {
  fmt::print(stderr, "snapvm: {}\n", message);
  return 1;
}

Result<firecracker::VmConfig> read_config_file(const std::string& path) {
  // Never blocks on a FIFO named as the config file (api_paths.h).
  auto fd = firecracker::open_api_input(path, firecracker::ApiInput::kFile, false, "--config-file");
  if (!fd) return tl::unexpected(std::move(fd.error()));
  constexpr uint64_t kMaxConfigBytes = 1u << 20;
  auto size = file_size(fd->get());
  if (!size) return tl::unexpected(std::move(size.error()).context("--config-file " + path));
  if (*size > kMaxConfigBytes) return make_error(ErrorCode::kInvalidArgument, "--config-file {}: over 1 MiB", path);
  std::string text(*size, '\0');
  if (auto r = pread_exact(fd->get(), {reinterpret_cast<uint8_t*>(text.data()), text.size()}, 0); !r) {
    return tl::unexpected(std::move(r.error()).context("--config-file " + path));
  }
  auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return make_error(ErrorCode::kInvalidArgument, "--config-file {}: not valid JSON", path);
  auto config = firecracker::parse_config_file(doc);
  if (!config) return tl::unexpected(std::move(config.error()).context("--config-file " + path));
  return config;
}

int run_firecracker(const FirecrackerOptions& o) {
  // One line, as Firecracker's own: clients that check the version (Kata
  // Containers) read the second word.
  if (o.version) {
    fmt::print("Firecracker v{} ({})\n", firecracker::kApiVersion, kProgramVersion);
    return 0;
  }
  if (o.boot_timer) return fail("--boot-timer is not supported by snapvm");
  if (!o.seccomp_filter.empty()) {
    return fail("--seccomp-filter: snapvm installs its own per-thread filters (or none with --no-seccomp)");
  }
  if (o.max_payload != firecracker::kMaxBodyBytes) {
    return fail(fmt::format("--http-api-max-payload-size: snapvm takes bodies of up to {} bytes only",
                            firecracker::kMaxBodyBytes));
  }
  if (o.no_api && o.config_file.empty()) return fail("--no-api needs --config-file");
  // Before any thread, as in run: SIGINT, SIGTERM and SIGHUP stop the VM
  // through its normal path, and the API socket goes with the process.
  auto signals = take_shutdown_signals();
  if (!signals) return fail(signals.error().describe());
  if (!o.no_seccomp) {
    if (auto s = sandbox::enable(sandbox::Mode::kEnforce); !s) return fail(s.error().describe());
  }
  std::optional<firecracker::VmConfig> config;
  if (!o.config_file.empty()) {
    auto c = read_config_file(o.config_file);
    if (!c) return fail(c.error().describe());
    config = std::move(*c);
  }
  firecracker::MachineBackend backend([](std::string_view s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    if (s.find('\n') != std::string_view::npos) std::fflush(stdout);
  });
  if (!(o.page_fault_timeout_s >= 0 && o.page_fault_timeout_s <= 86400)) {
    return fail("--page-fault-timeout: give seconds from 0 (wait forever) to 86400");
  }
  backend.set_page_fault_timeout(std::chrono::milliseconds(static_cast<int64_t>(o.page_fault_timeout_s * 1000)));
  firecracker::Api api(o.id, backend, arch::virtio_slot_count());
  // The flags mean what the API requests of the same name mean.
  auto put = [&api](const char* path, const nlohmann::json& body, const char* flag) -> bool {
    auto r = api.handle("PUT", path, body.dump());
    if (r.status < 400) return true;
    auto fault = nlohmann::json::parse(r.body, nullptr, false);
    fmt::print(stderr, "snapvm: {}: {}\n", flag, fault.is_object() ? fault.value("fault_message", r.body) : r.body);
    return false;
  };
  if (!o.log_path.empty() &&
      !put("/logger", {{"log_path", o.log_path}, {"level", o.level}, {"show_level", o.show_level},
                       {"show_log_origin", o.show_log_origin}}, "--log-path")) {
    return 1;
  }
  if (!o.metrics_path.empty() && !put("/metrics", {{"metrics_path", o.metrics_path}}, "--metrics-path")) return 1;
  std::unique_ptr<firecracker::HttpServer> server;
  if (!o.no_api) {
    auto s = firecracker::HttpServer::start(o.api_sock, api);
    if (!s) return fail(s.error().describe());
    server = std::move(*s);
  }
  std::atomic<int> stopped_by{0};
  std::jthread signal_watch([&](std::stop_token stop) {
    sandbox::enter_or_die(sandbox::ThreadKind::kControl);
    stopped_by = stop_on_signal([&backend] { backend.stop(); }, *signals, stop);
  });
  int rc = 0;
  if (config) {
    // The start waits for the VMM thread, which is this one: start from a
    // helper thread, which goes through the API as its thread does.
    std::thread starter([&] {
      sandbox::enter_or_die(sandbox::ThreadKind::kApi);
      if (auto s = api.configure_and_start(*config); !s) {
        fmt::print(stderr, "snapvm: {}\n", s.error().describe());
        rc = 1;
        backend.stop();
      }
    });
    int vmm_rc = backend.run_vmm_thread();
    starter.join();
    if (rc == 0) rc = vmm_rc;
  } else {
    rc = backend.run_vmm_thread();
  }
  signal_watch.request_stop();
  signal_watch.join();
  server.reset();
  if (int sig = stopped_by.load(); sig != 0) {
    fmt::print(stderr, "snapvm: SIG{}: the VM has stopped\n", ::sigabbrev_np(sig));
    return rc != 0 ? rc : 128 + sig;
  }
  return rc;
}

}  // namespace

std::function<int()> register_firecracker_command(CLI::App& app) {
  auto o = std::make_shared<FirecrackerOptions>();
  auto* cmd = app.add_subcommand("firecracker", "Serve Firecracker's REST API on a Unix socket and run the VM it configures");
  cmd->footer(
      "Firecracker clients (firectl, firecracker-go-sdk, Kata Containers) drive snapvm unchanged; a snapvm\n"
      "binary installed as `firecracker` takes these flags directly. docs/firecracker-api.md lists\n"
      "each endpoint and how far snapvm supports it.\n\n"
      "Example:\n"
      "  snapvm firecracker --api-sock /tmp/fc.sock &\n"
      "  curl --unix-socket /tmp/fc.sock -X PUT http://localhost/boot-source \\\n"
      "       -d '{\"kernel_image_path\": \"vmlinuz\", \"initrd_path\": \"initrd.cpio\"}'\n"
      "  curl --unix-socket /tmp/fc.sock -X PUT http://localhost/actions -d '{\"action_type\": \"InstanceStart\"}'");
  cmd->add_option("--api-sock", o->api_sock, "the API's Unix socket, made 0600 (a stale one is replaced; a live VMM's is refused)")->capture_default_str();
  cmd->add_option("--id", o->id, "the instance id GET / reports")->capture_default_str();
  cmd->add_option("--config-file", o->config_file, "configure from this JSON file and start the VM at once");
  cmd->add_flag("--no-api", o->no_api, "serve no API (needs --config-file)");
  cmd->add_option("--log-path", o->log_path, "write log lines to this file or FIFO");
  cmd->add_option("--level", o->level, "log level (Error, Warning, Info, Debug)")->capture_default_str();
  cmd->add_flag("--show-level", o->show_level, "with --log-path: as the logger's show_level");
  cmd->add_flag("--show-log-origin", o->show_log_origin, "with --log-path: as the logger's show_log_origin");
  cmd->add_option("--metrics-path", o->metrics_path, "write metrics lines to this file or FIFO (on FlushMetrics)");
  cmd->add_option("--page-fault-timeout", o->page_fault_timeout_s,
                  "snapshot/load with a Uffd backend: end the VMM with one line when the page server leaves guest "
                  "memory faults unread this many seconds (0: wait forever, as Firecracker does)")
      ->capture_default_str();
  cmd->add_flag("--version", o->version, "print the Firecracker API version snapvm answers to and snapvm's, and exit");
  cmd->add_flag("--no-seccomp", o->no_seccomp, "run without snapvm's per-thread seccomp filters");
  cmd->add_option("--seccomp-filter", o->seccomp_filter, "refused: snapvm's filters are built in");
  cmd->add_flag("--boot-timer", o->boot_timer, "refused: not supported");
  cmd->add_option("--http-api-max-payload-size", o->max_payload, "largest request body (snapvm: 51200 only)");
  cmd->add_option("--start-time-us", o->start_time_us, "from Firecracker's jailer; accepted");
  cmd->add_option("--start-time-cpu-us", o->start_time_cpu_us, "from Firecracker's jailer; accepted");
  cmd->add_option("--parent-cpu-time-us", o->parent_cpu_time_us, "from Firecracker's jailer; accepted");
  return [cmd, o]() -> int {
    if (*cmd) return run_firecracker(*o);
    return -1;
  };
}

}  // namespace snapvm::cli
