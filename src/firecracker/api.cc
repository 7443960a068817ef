#include "firecracker/api.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>

#include "base/result.h"
#include "firecracker/api_paths.h"

namespace snapvm::firecracker {
namespace {

using nlohmann::json;

// Paths and ids come from clients and may not be UTF-8: replaced, never a throw.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

HttpResponse ok_json(json body) { return {200, dump(body)}; }
HttpResponse no_content() { return {204, {}}; }

HttpResponse fault(std::string message) { return {400, fault_body(message)}; }
HttpResponse fault(const Error& e) { return fault(e.describe()); }

// "/drives/ID" -> "ID" when `path` is under `prefix`.
std::optional<std::string_view> item_id(std::string_view path, std::string_view prefix) {
  if (path.size() <= prefix.size() || path.substr(0, prefix.size()) != prefix) return std::nullopt;
  std::string_view id = path.substr(prefix.size());
  if (id.find('/') != std::string_view::npos) return std::nullopt;
  return id;
}

constexpr std::string_view kNotAfterStart = "The requested operation is not supported after starting the microVM.";

}  // namespace

std::string fault_body(std::string_view message) { return dump(json{{"fault_message", message}}); }

std::string_view to_string(VmState s) {
  switch (s) {
    case VmState::kNotStarted: return "Not started";
    case VmState::kRunning: return "Running";
    case VmState::kPaused: return "Paused";
  }
  return "?";
}

Result<UniqueFd> open_output(const std::string& path) {
  // Never blocks, never follows a link, FIFOs read-write (api_paths.h).
  return open_api_sink(path, "path");
}

VmState Api::state() const {
  MutexLock lock(mu_);
  return state_;
}

HttpResponse Api::handle(std::string_view method, std::string_view path, std::string_view body) {
  MutexLock lock(mu_);
  ++requests_;
  HttpResponse r;
  try {
    r = route(method, path, body);
  } catch (const std::exception& e) {  // a bug, not the client's: still one fault, and the VMM lives
    r = {500, fault_body(std::string("internal error: ") + e.what())};
  }
  if (r.status >= 400) ++faults_;
  return r;
}

std::optional<HttpResponse> Api::require_configuring(std::string_view what) const {
  if (state_ != VmState::kNotStarted) {
    return fault(fmt::format("{}: {}", what, kNotAfterStart));
  }
  return std::nullopt;
}

HttpResponse Api::route(std::string_view method, std::string_view path, std::string_view body_text) {
  // GETs carry no body; every other request must carry a JSON object.
  json body;
  if (method != "GET") {
    auto parsed = parse_body(body_text);
    if (!parsed) return fault(parsed.error());
    body = std::move(*parsed);
  }
  if (method == "GET") {
    if (path == "/") {
      return ok_json({{"id", id_}, {"state", to_string(state_)}, {"vmm_version", kApiVersion}, {"app_name", "snapvm"}});
    }
    if (path == "/version") return ok_json({{"firecracker_version", kApiVersion}});
    if (path == "/vm/config") return ok_json(to_json(config_));
    if (path == "/machine-config") return ok_json(to_json(config_.machine));
  } else if (method == "PUT") {
    if (path == "/machine-config") {
      if (auto f = require_configuring("machine-config")) return *f;
      auto m = parse_machine_config(body);
      if (!m) return fault(m.error());
      config_.machine = *m;
      configured_ = true;
      return no_content();
    }
    if (path == "/boot-source") {
      if (auto f = require_configuring("boot-source")) return *f;
      auto b = parse_boot_source(body);
      if (!b) return fault(b.error());
      config_.boot_source = std::move(*b);
      configured_ = true;
      return no_content();
    }
    if (auto id = item_id(path, "/drives/")) return put_drive(*id, body);
    if (path == "/vsock") {
      if (auto f = require_configuring("vsock")) return *f;
      auto v = parse_vsock(body);
      if (!v) return fault(v.error());
      config_.vsock = std::move(*v);
      configured_ = true;
      return no_content();
    }
    if (path == "/entropy") {
      if (auto f = require_configuring("entropy")) return *f;
      if (auto s = parse_entropy(body); !s) return fault(s.error());
      config_.entropy = true;
      return no_content();
    }
    if (auto id = item_id(path, "/network-interfaces/")) return put_network_interface(*id, body);
    if (path == "/logger") return logger(body);
    if (path == "/metrics") return metrics(body);
    if (path == "/actions") return action(body);
    if (path == "/snapshot/create") return snapshot_create(body);
    if (path == "/snapshot/load") return snapshot_load(body);
    if (path == "/balloon" || path == "/mmds" || path == "/mmds/config" || path == "/cpu-config") {
      return fault(fmt::format("{}: not supported by snapvm", path.substr(1)));
    }
  } else if (method == "PATCH") {
    if (path == "/machine-config") {
      if (auto f = require_configuring("machine-config")) return *f;
      auto p = parse_machine_config_patch(body);
      if (!p) return fault(p.error());
      if (p->vcpu_count) config_.machine.vcpu_count = *p->vcpu_count;
      if (p->mem_size_mib) config_.machine.mem_size_mib = *p->mem_size_mib;
      if (p->smt) config_.machine.smt = *p->smt;
      if (p->track_dirty_pages) config_.machine.track_dirty_pages = *p->track_dirty_pages;
      configured_ = true;
      return no_content();
    }
    if (auto id = item_id(path, "/drives/")) return patch_drive(*id, body);
    if (path == "/vm") return vm_state(body);
    if (item_id(path, "/network-interfaces/")) {
      return fault("network-interfaces: PATCH changes rate limiters, which snapvm does not have");
    }
    if (path == "/balloon" || path == "/mmds") return fault(fmt::format("{}: not supported by snapvm", path.substr(1)));
  }
  std::string shown(path.substr(0, 128));
  return fault(fmt::format("Invalid request method and/or path: {} {}", method.substr(0, 16), shown));
}

HttpResponse Api::put_drive(std::string_view id, const json& body) {
  if (auto f = require_configuring("drives")) return *f;
  auto d = parse_drive(body);
  if (!d) return fault(d.error());
  if (d->drive_id != id) return fault("drive: the id in the path does not match `drive_id` in the body");
  // A PUT of a known id replaces it in place (Firecracker's rule), so the
  // order the guest sees stays the order drives were first put.
  auto& drives = config_.drives;
  if (auto ok = check_joins(drives, *d); !ok) return fault(ok.error());
  bool replaced = false;
  for (auto& other : drives) {
    if (other.drive_id == d->drive_id) {
      other = *d;
      replaced = true;
    }
  }
  if (!replaced) {
    if (auto f = require_slot("drives")) return *f;
    drives.push_back(std::move(*d));
  }
  configured_ = true;
  return no_content();
}

HttpResponse Api::put_network_interface(std::string_view id, const json& body) {
  if (auto f = require_configuring("network-interfaces")) return *f;
  auto n = parse_network_interface(body);
  if (!n) return fault(n.error());
  if (n->iface_id != id) return fault("network-interfaces: the id in the path does not match `iface_id` in the body");
  auto& list = config_.network_interfaces;
  if (auto ok = check_joins(list, *n); !ok) return fault(ok.error());
  bool replaced = false;
  for (auto& other : list) {
    if (other.iface_id == n->iface_id) {
      other = *n;
      replaced = true;
    }
  }
  if (!replaced) {
    if (auto f = require_slot("network-interfaces")) return *f;
    list.push_back(std::move(*n));
  }
  configured_ = true;
  return no_content();
}

std::optional<HttpResponse> Api::require_slot(std::string_view what) const {
  if (config_.drives.size() + config_.network_interfaces.size() < max_attached_) return std::nullopt;
  return fault(fmt::format("{}: the machine attaches at most {} drives and network interfaces together", what,
                           max_attached_));
}

HttpResponse Api::patch_drive(std::string_view id, const json& body) {
  auto p = parse_drive_patch(body);
  if (!p) return fault(p.error());
  if (p->drive_id != id) return fault("drive: the id in the path does not match `drive_id` in the body");
  if (state_ == VmState::kNotStarted) {
    return fault("drive: PATCH is for a started microVM; before the start, PUT the drive again");
  }
  size_t index = config_.drives.size();
  for (size_t i = 0; i < config_.drives.size(); ++i) {
    if (config_.drives[i].drive_id == p->drive_id) index = i;
  }
  if (index == config_.drives.size()) return fault(fmt::format("drive: no drive `{}`", p->drive_id));
  if (p->path_on_host) {
    if (auto s = backend_.replace_drive(index, *p->path_on_host); !s) return fault(s.error());
    config_.drives[index].path_on_host = *p->path_on_host;
  }
  return no_content();
}

Status Api::start() {
  if (!config_.boot_source) {
    return make_error(ErrorCode::kFailedPrecondition, "InstanceStart: no boot source; PUT /boot-source first");
  }
  SNAPVM_CHECK_OK(backend_.start(config_));
  state_ = VmState::kRunning;
  return {};
}

HttpResponse Api::action(const json& body) {
  auto a = parse_action(body);
  if (!a) return fault(a.error());
  switch (*a) {
    case Action::kInstanceStart: {
      if (auto f = require_configuring("InstanceStart")) return *f;
      if (auto s = start(); !s) return fault(s.error());
      return no_content();
    }
    case Action::kSendCtrlAltDel: {
      if (state_ != VmState::kRunning) return fault("SendCtrlAltDel: the microVM is not running");
      if (auto s = backend_.send_ctrl_alt_del(); !s) return fault(s.error());
      return no_content();
    }
    case Action::kFlushMetrics: {
      if (auto s = flush_metrics(); !s) return fault(s.error());
      return no_content();
    }
  }
  return fault("actions: unknown action");
}

HttpResponse Api::vm_state(const json& body) {
  auto change = parse_vm_state(body);
  if (!change) return fault(change.error());
  if (state_ == VmState::kNotStarted) return fault("vm: the microVM is not started");
  if (*change == VmStateChange::kPause) {
    if (state_ == VmState::kRunning) {
      if (auto s = backend_.pause(); !s) return fault(s.error());
      state_ = VmState::kPaused;
    }
  } else if (state_ == VmState::kPaused) {
    if (auto s = backend_.resume(); !s) return fault(s.error());
    state_ = VmState::kRunning;
  }
  return no_content();
}

HttpResponse Api::snapshot_create(const json& body) {
  auto s = parse_snapshot_create(body);
  if (!s) return fault(s.error());
  if (state_ != VmState::kPaused) return fault("snapshot/create: pause the microVM first (PATCH /vm Paused)");
  if (auto r = backend_.create_snapshot(*s); !r) return fault(r.error());
  return no_content();
}

HttpResponse Api::snapshot_load(const json& body) {
  auto s = parse_snapshot_load(body);
  if (!s) return fault(s.error());
  if (state_ != VmState::kNotStarted || configured_) {
    return fault("snapshot/load: loading a snapshot is allowed only into a fresh process, before any "
                 "boot-specific configuration");
  }
  if (auto r = backend_.load_snapshot(*s); !r) return fault(r.error());
  config_.drives = backend_.loaded_drives();
  state_ = s->resume_vm ? VmState::kRunning : VmState::kPaused;
  return no_content();
}

HttpResponse Api::logger(const json& body) {
  auto l = parse_logger(body);
  if (!l) return fault(l.error());
  if (logger_set_) return fault("logger: already configured");
  if (l->log_path) {
    auto fd = open_output(*l->log_path);
    if (!fd) return fault(std::move(fd.error()).context("logger"));
    if (auto s = backend_.redirect_log(std::move(*fd)); !s) return fault(s.error());
  }
  config_.logger = std::move(*l);
  logger_set_ = true;
  return no_content();
}

HttpResponse Api::metrics(const json& body) {
  auto m = parse_metrics(body);
  if (!m) return fault(m.error());
  if (metrics_fd_.valid()) return fault("metrics: already configured");
  auto fd = open_output(m->metrics_path);
  if (!fd) return fault(std::move(fd.error()).context("metrics"));
  metrics_fd_ = std::move(*fd);
  config_.metrics = std::move(*m);
  return no_content();
}

Status Api::flush_metrics() {
  if (!metrics_fd_.valid()) {
    return make_error(ErrorCode::kFailedPrecondition, "FlushMetrics: no metrics file; PUT /metrics first");
  }
  auto now = std::chrono::system_clock::now().time_since_epoch();
  json line = {{"utc_timestamp_ms", std::chrono::duration_cast<std::chrono::milliseconds>(now).count()},
               {"api_server", {{"requests", requests_}, {"faults", faults_}}},
               {"vmm", {{"state", to_string(state_)}}}};
  if (state_ != VmState::kNotStarted) line["vmm"].update(backend_.metrics());
  std::string text = dump(line) + "\n";
  // One write, so a FIFO reader sees whole lines (PIPE_BUF permitting).
  ssize_t n = ::write(metrics_fd_.get(), text.data(), text.size());
  if (n < 0) return errno_error("FlushMetrics: write the metrics file");
  return {};
}

Status Api::configure_and_start(const VmConfig& config) {
  MutexLock lock(mu_);
  if (state_ != VmState::kNotStarted) return make_error(ErrorCode::kFailedPrecondition, std::string(kNotAfterStart));
  if (config.drives.size() + config.network_interfaces.size() > max_attached_) {
    return make_error(ErrorCode::kInvalidArgument,
                      "{} drives and {} network interfaces: the machine attaches at most {} together",
                      config.drives.size(), config.network_interfaces.size(), max_attached_);
  }
  if (config.logger && config.logger->log_path) {
    auto fd = SNAPVM_TRY(open_output(*config.logger->log_path));
    SNAPVM_CHECK_OK(backend_.redirect_log(std::move(fd)));
    logger_set_ = true;
  }
  if (config.metrics) metrics_fd_ = SNAPVM_TRY(open_output(config.metrics->metrics_path));
  config_ = config;
  configured_ = true;
  return start();
}

}  // namespace snapvm::firecracker
