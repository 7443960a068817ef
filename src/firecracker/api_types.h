// The request bodies of Firecracker's REST API (its swagger definition,
// v1.x), parsed from what a client sent. Clients are untrusted: every body,
// however malformed, becomes either its typed struct or one fault message;
// nothing here throws. As in Firecracker, unknown fields are refused rather
// than ignored, so a setting snapvm does not implement is never dropped
// silently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace snapvm::firecracker {

// Firecracker's default --http-api-max-payload-size.
inline constexpr size_t kMaxBodyBytes = 51200;
// Longest host path a body may name (PATH_MAX).
inline constexpr size_t kMaxPathBytes = 4096;
// Longest drive or interface id Firecracker accepts.
inline constexpr size_t kMaxIdBytes = 64;
inline constexpr uint32_t kMaxVcpus = 32;

struct MachineConfigBody {
  uint32_t vcpu_count = 1;
  uint64_t mem_size_mib = 128;  // Firecracker's default
  bool smt = false;
  bool track_dirty_pages = false;
};

// PATCH /machine-config: only the fields given change.
struct MachineConfigPatch {
  std::optional<uint32_t> vcpu_count;
  std::optional<uint64_t> mem_size_mib;
  std::optional<bool> smt;
  std::optional<bool> track_dirty_pages;
};

struct BootSourceBody {
  std::string kernel_image_path;
  std::optional<std::string> initrd_path;
  std::optional<std::string> boot_args;  // none: snapvm's default command line
};

struct DriveBody {
  std::string drive_id;
  std::string path_on_host;
  bool is_root_device = false;
  bool is_read_only = false;
  std::optional<std::string> partuuid;
  std::string cache_type = "Unsafe";
  std::string io_engine = "Sync";
};

struct DrivePatch {
  std::string drive_id;
  std::optional<std::string> path_on_host;
};

struct NetworkInterfaceBody {
  std::string iface_id;
  std::string host_dev_name;             // the tap
  std::optional<std::string> guest_mac;  // "AA:FC:00:00:00:01"; none: a random one
};

struct VsockBody {
  uint32_t guest_cid = 3;
  std::string uds_path;
  std::optional<std::string> vsock_id;  // deprecated in Firecracker, still sent by older clients
};

struct LoggerBody {
  std::optional<std::string> log_path;
  std::string level = "Info";
  bool show_level = false;
  bool show_log_origin = false;
  std::optional<std::string> module;
};

struct MetricsBody {
  std::string metrics_path;
};

enum class Action { kInstanceStart, kSendCtrlAltDel, kFlushMetrics };
enum class VmStateChange { kPause, kResume };

struct SnapshotCreateBody {
  bool diff = false;  // snapshot_type "Diff"
  std::string snapshot_path;
  std::string mem_file_path;
};

struct SnapshotLoadBody {
  std::string snapshot_path;
  enum class Backend { kFile, kUffd } backend = Backend::kFile;
  std::string backend_path;  // the memory file (File) or the page server's socket (Uffd)
  bool track_dirty_pages = false;
  bool resume_vm = false;
  std::optional<std::string> vsock_uds_override;
  bool clock_realtime = false;
  // network_overrides: per iface_id of the snapshot, this VM's tap.
  std::vector<std::pair<std::string, std::string>> network_overrides;
};

// The whole pre-boot configuration, as --config-file and GET /vm/config
// write it.
struct VmConfig {
  MachineConfigBody machine;
  std::optional<BootSourceBody> boot_source;
  std::vector<DriveBody> drives;  // in the order they were first put
  std::vector<NetworkInterfaceBody> network_interfaces;  // eth0, eth1, ... in the order first put
  std::optional<VsockBody> vsock;
  std::optional<LoggerBody> logger;
  std::optional<MetricsBody> metrics;
  bool entropy = false;  // PUT /entropy (snapvm always has a virtio-rng)
};

// Each returns the typed body or a fault message for the client.
Result<MachineConfigBody> parse_machine_config(const nlohmann::json& body);
Result<MachineConfigPatch> parse_machine_config_patch(const nlohmann::json& body);
Result<BootSourceBody> parse_boot_source(const nlohmann::json& body);
Result<DriveBody> parse_drive(const nlohmann::json& body);
Result<DrivePatch> parse_drive_patch(const nlohmann::json& body);
Result<VsockBody> parse_vsock(const nlohmann::json& body);
Result<NetworkInterfaceBody> parse_network_interface(const nlohmann::json& body);
Result<LoggerBody> parse_logger(const nlohmann::json& body);
Result<MetricsBody> parse_metrics(const nlohmann::json& body);
Status parse_entropy(const nlohmann::json& body);
Result<Action> parse_action(const nlohmann::json& body);
Result<VmStateChange> parse_vm_state(const nlohmann::json& body);
Result<SnapshotCreateBody> parse_snapshot_create(const nlohmann::json& body);
Result<SnapshotLoadBody> parse_snapshot_load(const nlohmann::json& body);

// Firecracker's rules for a drive or a network interface joining those
// already configured, the same for the config file and the API: one root
// drive; a tap serves one interface. An entry of the same id is the one it
// would replace, never a conflict.
Status check_joins(const std::vector<DriveBody>& drives, const DriveBody& drive);
Status check_joins(const std::vector<NetworkInterfaceBody>& interfaces, const NetworkInterfaceBody& interface);

// A body as JSON: an object, within kMaxBodyBytes, or a fault.
Result<nlohmann::json> parse_body(std::string_view text);

// A --config-file: the same objects under Firecracker's keys
// ("boot-source", "drives", "machine-config", "vsock", "logger", ...).
Result<VmConfig> parse_config_file(const nlohmann::json& doc);

// GET /vm/config and GET /machine-config, in Firecracker's shape.
nlohmann::json to_json(const VmConfig& config);
nlohmann::json to_json(const MachineConfigBody& machine);

}  // namespace snapvm::firecracker
