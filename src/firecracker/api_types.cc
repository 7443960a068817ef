#include "firecracker/api_types.h"

#include <cctype>

#include <set>

#include "base/json_fields.h"

namespace snapvm::firecracker {
namespace {

using nlohmann::json;

// Reads the fields of one body object, remembering the first problem and
// every field it was asked about, so finish() can refuse the rest.
class Fields {
 public:
  Fields(const json& j, std::string_view what) : j_(j), what_(what) {
    if (!j.is_object()) fail(fmt::format("{}: expected a JSON object", what_));
  }

  template <typename T>
  std::optional<T> get(const char* key, const char* type_name, bool required = false) {
    known_.insert(key);
    if (!error_.empty() || !j_.is_object()) return std::nullopt;
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      if (required) fail(fmt::format("{}: missing field `{}`", what_, key));
      return std::nullopt;
    }
    auto v = json_field<T>(j_, key);
    if (!v) fail(fmt::format("{}: `{}` must be {}", what_, key, type_name));
    return v;
  }

  std::optional<std::string> path(const char* key, bool required = false) {
    auto v = get<std::string>(key, "a string", required);
    if (v && (v->empty() || v->size() > kMaxPathBytes || v->find('\0') != std::string::npos)) {
      fail(fmt::format("{}: `{}` must be a path of 1 to {} bytes", what_, key, kMaxPathBytes));
      return std::nullopt;
    }
    return v;
  }

  // A nested object or list, by JSON type.
  std::optional<json> nested(const char* key, json::value_t type, const char* type_name) {
    known_.insert(key);
    if (!error_.empty() || !j_.is_object()) return std::nullopt;
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return std::nullopt;
    if (it->type() != type) {
      fail(fmt::format("{}: `{}` must be {}", what_, key, type_name));
      return std::nullopt;
    }
    return *it;
  }

  std::optional<std::string> id(const char* key, bool required = true) {
    auto v = get<std::string>(key, "a string", required);
    if (v && !valid_id(*v)) {
      fail(fmt::format("{}: `{}` must be 1 to {} letters, digits or _", what_, key, kMaxIdBytes));
      return std::nullopt;
    }
    return v;
  }

  // A field snapvm knows but does not implement: refused by name when set.
  void unsupported(const char* key, const char* why) {
    known_.insert(key);
    if (!error_.empty() || !j_.is_object()) return;
    auto it = j_.find(key);
    if (it != j_.end() && !it->is_null()) fail(fmt::format("{}: `{}` is not supported by snapvm ({})", what_, key, why));
  }

  void fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
  }

  Status finish() {
    if (error_.empty() && j_.is_object()) {
      for (const auto& [key, value] : j_.items()) {
        if (known_.count(key) == 0) {
          std::string shown = key.size() > 64 ? key.substr(0, 64) + "..." : key;
          fail(fmt::format("{}: unknown field `{}`", what_, shown));
          break;
        }
      }
    }
    if (!error_.empty()) return make_error(ErrorCode::kInvalidArgument, error_);
    return {};
  }

  static bool valid_id(const std::string& s) {
    if (s.empty() || s.size() > kMaxIdBytes) return false;
    for (char c : s) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
    }
    return true;
  }

 private:
  const json& j_;
  std::string_view what_;
  std::set<std::string> known_;
  std::string error_;
};

Status check_vcpus(uint32_t n) {
  if (n == 0 || n > kMaxVcpus) {
    return make_error(ErrorCode::kInvalidArgument, "machine-config: vcpu_count must be 1 to {}", kMaxVcpus);
  }
  return {};
}

Status check_mem(uint64_t mib) {
  // snapvm maps RAM in 2 MiB blocks; the upper bound keeps the byte count
  // far from overflow and within what a host can give.
  if (mib < 16 || mib % 2 != 0 || mib > (1u << 20)) {
    return make_error(ErrorCode::kInvalidArgument,
                      "machine-config: mem_size_mib must be an even number from 16 to 1048576");
  }
  return {};
}

Status check_smt(bool smt) {
  if (smt) {
    return make_error(ErrorCode::kUnsupported,
                      "machine-config: smt=true is not supported by snapvm (each vCPU is its own core)");
  }
  return {};
}

// Fields of machine-config that Firecracker has and snapvm refuses when set
// to anything but their default.
void machine_config_extras(Fields& f) {
  if (auto t = f.get<std::string>("cpu_template", "a string"); t && *t != "None") {
    f.fail("machine-config: cpu_template is not supported by snapvm (only \"None\")");
  }
  if (auto h = f.get<std::string>("huge_pages", "a string"); h && *h != "None") {
    f.fail("machine-config: huge_pages is not supported by snapvm (only \"None\")");
  }
}

}  // namespace

Result<json> parse_body(std::string_view text) {
  if (text.size() > kMaxBodyBytes) {
    return make_error(ErrorCode::kInvalidArgument, "request body over {} bytes", kMaxBodyBytes);
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(ErrorCode::kInvalidArgument, "request body is not valid JSON");
  if (!j.is_object()) return make_error(ErrorCode::kInvalidArgument, "request body must be a JSON object");
  return j;
}

Result<MachineConfigBody> parse_machine_config(const json& body) {
  Fields f(body, "machine-config");
  MachineConfigBody m;
  auto vcpus = f.get<uint32_t>("vcpu_count", "a number", true);
  auto mem = f.get<uint64_t>("mem_size_mib", "a number", true);
  auto smt = f.get<bool>("smt", "true or false");
  auto dirty = f.get<bool>("track_dirty_pages", "true or false");
  machine_config_extras(f);
  SNAPVM_CHECK_OK(f.finish());
  m.vcpu_count = *vcpus;
  m.mem_size_mib = *mem;
  m.smt = smt.value_or(false);
  m.track_dirty_pages = dirty.value_or(false);
  SNAPVM_CHECK_OK(check_vcpus(m.vcpu_count));
  SNAPVM_CHECK_OK(check_mem(m.mem_size_mib));
  SNAPVM_CHECK_OK(check_smt(m.smt));
  return m;
}

Result<MachineConfigPatch> parse_machine_config_patch(const json& body) {
  Fields f(body, "machine-config");
  MachineConfigPatch p;
  p.vcpu_count = f.get<uint32_t>("vcpu_count", "a number");
  p.mem_size_mib = f.get<uint64_t>("mem_size_mib", "a number");
  p.smt = f.get<bool>("smt", "true or false");
  p.track_dirty_pages = f.get<bool>("track_dirty_pages", "true or false");
  machine_config_extras(f);
  SNAPVM_CHECK_OK(f.finish());
  if (p.vcpu_count) SNAPVM_CHECK_OK(check_vcpus(*p.vcpu_count));
  if (p.mem_size_mib) SNAPVM_CHECK_OK(check_mem(*p.mem_size_mib));
  if (p.smt) SNAPVM_CHECK_OK(check_smt(*p.smt));
  return p;
}

Result<BootSourceBody> parse_boot_source(const json& body) {
  Fields f(body, "boot-source");
  BootSourceBody b;
  auto kernel = f.path("kernel_image_path", true);
  b.initrd_path = f.path("initrd_path");
  b.boot_args = f.get<std::string>("boot_args", "a string");
  if (b.boot_args && (b.boot_args->size() > 2048 || b.boot_args->find('\0') != std::string::npos)) {
    f.fail("boot-source: `boot_args` must be at most 2048 bytes");
  }
  SNAPVM_CHECK_OK(f.finish());
  b.kernel_image_path = *kernel;
  return b;
}

Result<DriveBody> parse_drive(const json& body) {
  Fields f(body, "drive");
  DriveBody d;
  auto id = f.id("drive_id");
  auto path = f.path("path_on_host", true);
  auto root = f.get<bool>("is_root_device", "true or false", true);
  auto ro = f.get<bool>("is_read_only", "true or false");
  d.partuuid = f.get<std::string>("partuuid", "a string");
  if (d.partuuid && (d.partuuid->empty() || d.partuuid->size() > 64 ||
                     d.partuuid->find_first_not_of("0123456789abcdefABCDEF-") != std::string::npos)) {
    f.fail("drive: `partuuid` must be a partition UUID");
  }
  if (auto c = f.get<std::string>("cache_type", "a string")) {
    if (*c != "Unsafe" && *c != "Writeback") f.fail("drive: `cache_type` must be \"Unsafe\" or \"Writeback\"");
    d.cache_type = c.value_or("Unsafe");
  }
  if (auto e = f.get<std::string>("io_engine", "a string")) {
    if (*e != "Sync") f.fail("drive: io_engine \"" + e->substr(0, 32) + "\" is not supported by snapvm (only \"Sync\")");
  }
  f.unsupported("rate_limiter", "no I/O throttling");
  f.unsupported("socket", "no vhost-user block devices");
  SNAPVM_CHECK_OK(f.finish());
  d.drive_id = *id;
  d.path_on_host = *path;
  d.is_root_device = *root;
  d.is_read_only = ro.value_or(false);
  return d;
}

Result<DrivePatch> parse_drive_patch(const json& body) {
  Fields f(body, "drive");
  DrivePatch p;
  auto id = f.id("drive_id");
  p.path_on_host = f.path("path_on_host");
  f.unsupported("rate_limiter", "no I/O throttling");
  SNAPVM_CHECK_OK(f.finish());
  p.drive_id = *id;
  return p;
}

Result<VsockBody> parse_vsock(const json& body) {
  Fields f(body, "vsock");
  VsockBody v;
  auto cid = f.get<uint32_t>("guest_cid", "a number", true);
  auto uds = f.path("uds_path", true);
  v.vsock_id = f.get<std::string>("vsock_id", "a string");
  SNAPVM_CHECK_OK(f.finish());
  // 0-2 are the hypervisor, the local and the host addresses; ~0 is "any".
  if (*cid < 3 || *cid == UINT32_MAX) {
    return make_error(ErrorCode::kInvalidArgument, "vsock: guest_cid must be 3 or more (0 to 2 are reserved)");
  }
  v.guest_cid = *cid;
  v.uds_path = *uds;
  return v;
}

Result<NetworkInterfaceBody> parse_network_interface(const json& body) {
  Fields f(body, "network-interfaces");
  NetworkInterfaceBody n;
  auto id = f.id("iface_id");
  auto tap = f.get<std::string>("host_dev_name", "a string", true);
  n.guest_mac = f.get<std::string>("guest_mac", "a string");
  f.unsupported("rx_rate_limiter", "no network throttling");
  f.unsupported("tx_rate_limiter", "no network throttling");
  SNAPVM_CHECK_OK(f.finish());
  // A Linux interface name: what the tap is called on the host.
  if (tap->empty() || tap->size() > 15 || tap->find_first_of("/ \t\n\0", 0, 5) != std::string::npos) {
    return make_error(ErrorCode::kInvalidArgument, "network-interfaces: `host_dev_name` must be an interface name of "
                      "1 to 15 characters");
  }
  if (n.guest_mac) {
    const std::string& m = *n.guest_mac;
    bool ok = m.size() == 17;
    for (size_t i = 0; ok && i < m.size(); ++i) ok = i % 3 == 2 ? m[i] == ':' : std::isxdigit(static_cast<unsigned char>(m[i]));
    if (!ok) return make_error(ErrorCode::kInvalidArgument, "network-interfaces: `guest_mac` must be six hex bytes "
                               "as AA:FC:00:00:00:01");
  }
  n.iface_id = *id;
  n.host_dev_name = *tap;
  return n;
}

Result<LoggerBody> parse_logger(const json& body) {
  Fields f(body, "logger");
  LoggerBody l;
  l.log_path = f.path("log_path");
  if (auto level = f.get<std::string>("level", "a string")) {
    static const std::set<std::string> kLevels = {"Off", "Error", "Warning", "Info", "Debug", "Trace",
                                                  "off", "error", "warning", "info", "debug", "trace"};
    if (kLevels.count(*level) == 0) f.fail("logger: `level` must be Off, Error, Warning, Info, Debug or Trace");
    l.level = *level;
  }
  l.show_level = f.get<bool>("show_level", "true or false").value_or(false);
  l.show_log_origin = f.get<bool>("show_log_origin", "true or false").value_or(false);
  l.module = f.get<std::string>("module", "a string");
  SNAPVM_CHECK_OK(f.finish());
  return l;
}

Result<MetricsBody> parse_metrics(const json& body) {
  Fields f(body, "metrics");
  auto path = f.path("metrics_path", true);
  SNAPVM_CHECK_OK(f.finish());
  return MetricsBody{*path};
}

Status parse_entropy(const json& body) {
  Fields f(body, "entropy");
  f.unsupported("rate_limiter", "no entropy throttling");
  return f.finish();
}

Result<Action> parse_action(const json& body) {
  Fields f(body, "actions");
  auto type = f.get<std::string>("action_type", "a string", true);
  SNAPVM_CHECK_OK(f.finish());
  if (*type == "InstanceStart") return Action::kInstanceStart;
  if (*type == "SendCtrlAltDel") return Action::kSendCtrlAltDel;
  if (*type == "FlushMetrics") return Action::kFlushMetrics;
  return make_error(ErrorCode::kInvalidArgument,
                    "actions: unknown action_type (InstanceStart, SendCtrlAltDel or FlushMetrics)");
}

Result<VmStateChange> parse_vm_state(const json& body) {
  Fields f(body, "vm");
  auto state = f.get<std::string>("state", "a string", true);
  SNAPVM_CHECK_OK(f.finish());
  if (*state == "Paused") return VmStateChange::kPause;
  if (*state == "Resumed") return VmStateChange::kResume;
  return make_error(ErrorCode::kInvalidArgument, "vm: `state` must be \"Paused\" or \"Resumed\"");
}

Result<SnapshotCreateBody> parse_snapshot_create(const json& body) {
  Fields f(body, "snapshot/create");
  SnapshotCreateBody s;
  auto type = f.get<std::string>("snapshot_type", "a string");
  auto snap = f.path("snapshot_path", true);
  auto mem = f.path("mem_file_path", true);
  f.get<std::string>("version", "a string");  // the format version to write: snapvm writes its own
  SNAPVM_CHECK_OK(f.finish());
  if (type && *type != "Full" && *type != "Diff") {
    return make_error(ErrorCode::kInvalidArgument, "snapshot/create: `snapshot_type` must be \"Full\" or \"Diff\"");
  }
  s.diff = type && *type == "Diff";
  s.snapshot_path = *snap;
  s.mem_file_path = *mem;
  return s;
}

Result<SnapshotLoadBody> parse_snapshot_load(const json& body) {
  Fields f(body, "snapshot/load");
  SnapshotLoadBody s;
  auto snap = f.path("snapshot_path", true);
  auto mem_file = f.path("mem_file_path");
  auto backend = f.nested("mem_backend", json::value_t::object, "an object");
  auto diff = f.get<bool>("enable_diff_snapshots", "true or false");
  auto dirty = f.get<bool>("track_dirty_pages", "true or false");
  s.resume_vm = f.get<bool>("resume_vm", "true or false").value_or(false);
  s.clock_realtime = f.get<bool>("clock_realtime", "true or false").value_or(false);
  auto vsock = f.nested("vsock_override", json::value_t::object, "an object");
  auto nets = f.nested("network_overrides", json::value_t::array, "a list");
  SNAPVM_CHECK_OK(f.finish());
  if (mem_file.has_value() == backend.has_value()) {
    return make_error(ErrorCode::kInvalidArgument, "snapshot/load: give exactly one of `mem_backend` and `mem_file_path`");
  }
  if (backend) {
    Fields b(*backend, "snapshot/load: mem_backend");
    auto type = b.get<std::string>("backend_type", "a string", true);
    auto path = b.path("backend_path", true);
    SNAPVM_CHECK_OK(b.finish());
    if (*type == "File") {
      s.backend = SnapshotLoadBody::Backend::kFile;
    } else if (*type == "Uffd") {
      s.backend = SnapshotLoadBody::Backend::kUffd;
    } else {
      return make_error(ErrorCode::kInvalidArgument, "snapshot/load: `backend_type` must be \"File\" or \"Uffd\"");
    }
    s.backend_path = *path;
  } else {
    s.backend_path = *mem_file;
  }
  s.snapshot_path = *snap;
  s.track_dirty_pages = dirty.value_or(false) || diff.value_or(false);
  if (vsock) {
    Fields v(*vsock, "snapshot/load: vsock_override");
    auto uds = v.path("uds_path", true);
    SNAPVM_CHECK_OK(v.finish());
    s.vsock_uds_override = *uds;
  }
  if (nets) {
    if (nets->size() > 16) return make_error(ErrorCode::kInvalidArgument, "snapshot/load: too many network_overrides");
    for (const auto& o : *nets) {
      Fields n(o, "snapshot/load: network_overrides");
      auto id = n.id("iface_id");
      auto tap = n.get<std::string>("host_dev_name", "a string", true);
      SNAPVM_CHECK_OK(n.finish());
      s.network_overrides.emplace_back(*id, *tap);
    }
  }
  return s;
}

Status check_joins(const std::vector<DriveBody>& drives, const DriveBody& drive) {
  for (const auto& other : drives) {
    if (other.drive_id != drive.drive_id && other.is_root_device && drive.is_root_device) {
      return make_error(ErrorCode::kInvalidArgument, "drive: `{}` is already the root device", other.drive_id);
    }
  }
  return {};
}

Status check_joins(const std::vector<NetworkInterfaceBody>& interfaces, const NetworkInterfaceBody& interface) {
  for (const auto& other : interfaces) {
    if (other.iface_id != interface.iface_id && other.host_dev_name == interface.host_dev_name) {
      return make_error(ErrorCode::kInvalidArgument, "network-interfaces: tap {} is already `{}`'s",
                        interface.host_dev_name, other.iface_id);
    }
  }
  return {};
}

Result<VmConfig> parse_config_file(const json& doc) {
  if (!doc.is_object()) return make_error(ErrorCode::kInvalidArgument, "config file: expected a JSON object");
  VmConfig c;
  for (const auto& [key, value] : doc.items()) {
    if (value.is_null()) continue;
    if (key == "machine-config") {
      c.machine = SNAPVM_TRY(parse_machine_config(value));
    } else if (key == "boot-source") {
      c.boot_source = SNAPVM_TRY(parse_boot_source(value));
    } else if (key == "drives") {
      if (!value.is_array()) return make_error(ErrorCode::kInvalidArgument, "config file: `drives` must be a list");
      for (const auto& d : value) {
        DriveBody drive = SNAPVM_TRY(parse_drive(d));
        for (const auto& other : c.drives) {
          if (other.drive_id == drive.drive_id) {
            return make_error(ErrorCode::kInvalidArgument, "config file: drive `{}` is given twice", drive.drive_id);
          }
        }
        if (auto ok = check_joins(c.drives, drive); !ok) return tl::unexpected(std::move(ok.error()).context("config file"));
        c.drives.push_back(std::move(drive));
      }
    } else if (key == "vsock") {
      c.vsock = SNAPVM_TRY(parse_vsock(value));
    } else if (key == "logger") {
      c.logger = SNAPVM_TRY(parse_logger(value));
    } else if (key == "metrics") {
      c.metrics = SNAPVM_TRY(parse_metrics(value));
    } else if (key == "entropy") {
      SNAPVM_CHECK_OK(parse_entropy(value));
      c.entropy = true;
    } else if (key == "network-interfaces") {
      if (!value.is_array()) return make_error(ErrorCode::kInvalidArgument, "config file: `network-interfaces` must be a list");
      for (const auto& v : value) {
        NetworkInterfaceBody n = SNAPVM_TRY(parse_network_interface(v));
        for (const auto& other : c.network_interfaces) {
          if (other.iface_id == n.iface_id) {
            return make_error(ErrorCode::kInvalidArgument, "config file: network interface `{}` is given twice",
                              n.iface_id);
          }
        }
        if (auto ok = check_joins(c.network_interfaces, n); !ok) {
          return tl::unexpected(std::move(ok.error()).context("config file"));
        }
        c.network_interfaces.push_back(std::move(n));
      }
    } else if (key == "balloon" || key == "mmds-config" || key == "cpu-config") {
      return make_error(ErrorCode::kUnsupported, "config file: `{}` is not supported by snapvm", key);
    } else {
      std::string shown = key.size() > 64 ? key.substr(0, 64) + "..." : key;
      return make_error(ErrorCode::kInvalidArgument, "config file: unknown section `{}`", shown);
    }
  }
  return c;
}

json to_json(const MachineConfigBody& m) {
  return json{{"vcpu_count", m.vcpu_count},
              {"mem_size_mib", m.mem_size_mib},
              {"smt", m.smt},
              {"track_dirty_pages", m.track_dirty_pages},
              {"huge_pages", "None"}};
}

json to_json(const VmConfig& c) {
  auto optional_string = [](const std::optional<std::string>& s) { return s ? json(*s) : json(nullptr); };
  json j;
  j["machine-config"] = to_json(c.machine);
  if (c.boot_source) {
    j["boot-source"] = {{"kernel_image_path", c.boot_source->kernel_image_path},
                        {"initrd_path", optional_string(c.boot_source->initrd_path)},
                        {"boot_args", optional_string(c.boot_source->boot_args)}};
  } else {
    j["boot-source"] = nullptr;
  }
  j["drives"] = json::array();
  for (const auto& d : c.drives) {
    j["drives"].push_back({{"drive_id", d.drive_id},
                           {"path_on_host", d.path_on_host},
                           {"is_root_device", d.is_root_device},
                           {"is_read_only", d.is_read_only},
                           {"partuuid", optional_string(d.partuuid)},
                           {"cache_type", d.cache_type},
                           {"io_engine", d.io_engine},
                           {"rate_limiter", nullptr},
                           {"socket", nullptr}});
  }
  j["vsock"] = c.vsock ? json{{"guest_cid", c.vsock->guest_cid}, {"uds_path", c.vsock->uds_path}} : json(nullptr);
  j["logger"] = c.logger ? json{{"log_path", optional_string(c.logger->log_path)},
                                {"level", c.logger->level},
                                {"show_level", c.logger->show_level},
                                {"show_log_origin", c.logger->show_log_origin}}
                         : json(nullptr);
  j["metrics"] = c.metrics ? json{{"metrics_path", c.metrics->metrics_path}} : json(nullptr);
  j["entropy"] = c.entropy ? json::object() : json(nullptr);
  j["network-interfaces"] = json::array();
  for (const auto& n : c.network_interfaces) {
    j["network-interfaces"].push_back({{"iface_id", n.iface_id},
                                       {"host_dev_name", n.host_dev_name},
                                       {"guest_mac", optional_string(n.guest_mac)},
                                       {"rx_rate_limiter", nullptr},
                                       {"tx_rate_limiter", nullptr}});
  }
  j["balloon"] = nullptr;
  j["mmds-config"] = nullptr;
  j["cpu-config"] = nullptr;
  return j;
}

}  // namespace snapvm::firecracker
