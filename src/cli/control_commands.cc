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

#include "control/control_client.h"
#include "base/result.h"
#include "base/runtime_dir.h"
#include "base/unique_fd.h"

namespace snapvm::cli {
namespace {

using nlohmann::json;

int run_request(const std::string& vm, const json& req, const std::function<void(const json&)>& print) {
  auto r = control_request(control_path_for(vm), req);
  if (!r) {
    fmt::print(stderr, "snapvm: {}\n", r.error().describe());
    return 1;
  }
  print(*r);
  return 0;
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
  auto diff_from = std::make_shared<std::string>();
  snap->add_option("--diff-from", *diff_from,
                   "write BASE plus the pages dirtied since BASE was taken or restored (a standalone file; "
                   "the VM must track dirty pages)");

  return [=]() -> int {
    if (*pause) return run_request(*vm, {{"op", "pause"}}, [](const json&) { fmt::print("paused\n"); });
    if (*res) return run_request(*vm, {{"op", "resume"}}, [](const json&) { fmt::print("running\n"); });
    if (*info) return run_request(*vm, {{"op", "info"}}, [](const json& j) { fmt::print("{}\n", j.dump(2)); });
    if (*snap) {
      // The VM resolves paths from its own working directory: send absolute ones.
      json req{{"op", "snapshot"}, {"path", std::filesystem::absolute(*path).string()}, {"resume", *resume}};
      if (!diff_from->empty()) req["diff_from"] = std::filesystem::absolute(*diff_from).string();
      return run_request(*vm, req, [](const json& j) {
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
