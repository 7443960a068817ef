#include "cli/control_commands.h"
#include "base/json_fields.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/describe.h"
#include "control/control_client.h"
#include "base/result.h"
#include "base/runtime_dir.h"
#include "base/unique_fd.h"

namespace snapvm::cli {
namespace {

using nlohmann::json;

// Sends `req` to the VM's control socket; `print` shows the reply, or with
// --json the reply is printed as it came (errors as report_error's object).
int run_request(const std::string& vm, const json& req, bool json_out, const std::function<void(const json&)>& print) {
  auto r = control_request(control_path_for(vm), req);
  if (!r) return report_error(r.error().describe(), json_out);
  if (json_out) {
    fmt::print("{}\n", r->dump(2, ' ', false, json::error_handler_t::replace));
  } else {
    print(*r);
  }
  return 0;
}

std::string string_of(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// `snapvm info`'s human text.
void print_info(const json& j) {
  fmt::print("state:          {}\n", string_of(j, "state"));
  fmt::print("vCPUs:          {}\n", json_field_or(j, "vcpus", uint64_t{0}));
  fmt::print("memory:         {}\n", human_bytes(json_field_or(j, "mem_bytes", uint64_t{0})));
  const std::string base = string_of(j, "dirty_base");
  fmt::print("dirty tracking: {}\n", !json_field_or(j, "dirty_tracking", false) ? std::string("off")
                                     : base.empty()                             ? std::string("on")
                                                                                : "on, since " + base);
  std::string forwards;
  if (auto it = j.find("port_forwards"); it != j.end() && it->is_array()) {
    for (const auto& f : *it) {
      if (!f.is_object()) continue;
      forwards += fmt::format("{}{}:{} -> guest vsock port {}", forwards.empty() ? "" : ", ",
                              string_of(f, "host_address"), json_field_or(f, "host_port", uint64_t{0}),
                              json_field_or(f, "guest_port", uint64_t{0}));
    }
  }
  fmt::print("port forwards:  {}\n", forwards.empty() ? "none" : forwards);
  for (const char* key : {"devices", "vcpus_at"}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_array()) continue;
    fmt::print("{}\n", std::string_view(key) == "devices" ? "devices:" : "vCPUs at (read while paused):");
    for (const auto& line : *it) {
      if (line.is_string()) fmt::print("  {}\n", line.get<std::string>());
    }
  }
}

}  // namespace

std::string control_path_for(const std::string& vm) {
  if (vm.find('/') != std::string::npos || vm.ends_with(".sock")) return vm;
  return runtime_path(vm + ".sock");
}

std::function<int()> register_control_commands(CLI::App& app) {
  auto vm = std::make_shared<std::string>();
  auto path = std::make_shared<std::string>();
  auto resume = std::make_shared<bool>(false);
  auto json_out = std::make_shared<bool>(false);
  const char* vm_help = "the VM: its control socket path, or a name (/run/snapvm/NAME.sock)";
  auto* pause = app.add_subcommand("pause", "Pause a running VM (its vCPUs stop; snapshots need this)");
  pause->add_option("VM", *vm, vm_help)->required();
  auto* res = app.add_subcommand("resume", "Resume a paused VM");
  res->add_option("VM", *vm, vm_help)->required();
  auto* info = app.add_subcommand("info", "Show a running VM's state");
  info->add_option("VM", *vm, vm_help)->required();
  auto* snap = app.add_subcommand("snapshot", "Write a snapshot of a running VM (pausing it first if needed)");
  snap->add_option("VM", *vm, vm_help)->required();
  snap->add_option("FILE", *path, "snapshot file to write")->required();
  snap->add_flag("--resume", *resume, "resume the VM once the snapshot is written");
  for (auto* c : {pause, res, info, snap}) {
    c->add_flag("--json", *json_out, "print the VM's reply (or the error) as one JSON object on stdout");
  }
  auto diff_from = std::make_shared<std::string>();
  snap->add_option("--diff-from", *diff_from,
                   "write BASE plus the pages dirtied since BASE was taken or restored (a standalone file; "
                   "the VM must track dirty pages)");

  return [=]() -> int {
    const bool as_json = *json_out;
    if (*pause) return run_request(*vm, {{"op", "pause"}}, as_json, [](const json&) { fmt::print("paused\n"); });
    if (*res) return run_request(*vm, {{"op", "resume"}}, as_json, [](const json&) { fmt::print("running\n"); });
    if (*info) return run_request(*vm, {{"op", "info"}}, as_json, print_info);
    if (*snap) {
      // The VM resolves paths from its own working directory: send absolute ones.
      json req{{"op", "snapshot"}, {"path", std::filesystem::absolute(*path).string()}, {"resume", *resume}};
      if (!diff_from->empty()) req["diff_from"] = std::filesystem::absolute(*diff_from).string();
      return run_request(*vm, req, as_json, [](const json& j) {
        std::string kind = json_field_or(j, "diff", false)
                               ? fmt::format("diff, {} MiB of RAM written{}", json_field_or(j, "written_bytes", uint64_t{0}) >> 20,
                                             json_field_or(j, "reflinked", false) ? ", base reflinked" : ", base copied")
                               : fmt::format("{} MiB data", json_field_or(j, "data_bytes", uint64_t{0}) >> 20);
        fmt::print("wrote {}: {} MiB RAM, {}, guest paused {:.1f} ms{}\n", json_field_or(j, "path", std::string()),
                   json_field_or(j, "ram_bytes", uint64_t{0}) >> 20, kind, json_field_or(j, "pause_ms", 0.0),
                   json_field_or(j, "state", std::string()) == "running" ? ", now running" : ", still paused");
      });
    }
    return -1;
  };
}

}  // namespace snapvm::cli
