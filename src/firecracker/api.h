// Firecracker's REST API over snapvm: routes a request (method, path, body)
// to the configuration it builds or to the running VM, with Firecracker's
// state rules (configuration only before the start, snapshot load only into
// a fresh process, snapshots only while paused), status codes and fault
// bodies. Transport-free, so tests and the fuzzer drive it without a socket;
// http_server.h serves it on a Unix socket.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "base/thread_annotations.h"
#include "base/unique_fd.h"
#include "firecracker/api_types.h"

namespace snapvm::firecracker {

// The API version snapvm answers to (GET /version, GET /): the Firecracker
// release whose endpoints docs/firecracker-api.md compares against.
inline constexpr std::string_view kApiVersion = "1.7.0";

// What the API asks of the VM. Each call returns once done; an error becomes
// the client's fault message. Called one at a time (Api serializes).
class VmBackend {
 public:
  virtual ~VmBackend() = default;
  // Boots the configured VM (InstanceStart).
  virtual Status start(const VmConfig& config) = 0;
  // Builds the VM from a snapshot, paused unless body.resume_vm.
  virtual Status load_snapshot(const SnapshotLoadBody& body) = 0;
  virtual Status pause() = 0;
  virtual Status resume() = 0;
  virtual Status create_snapshot(const SnapshotCreateBody& body) = 0;
  virtual Status send_ctrl_alt_del() = 0;
  // A running VM's drive `index` (in VmConfig::drives order) now reads and
  // writes `path`.
  virtual Status replace_drive(size_t index, const std::string& path) = 0;
  // After load_snapshot: the drives the snapshot brought (ids as they were
  // put when it was taken), in replace_drive's order.
  virtual std::vector<DriveBody> loaded_drives() { return {}; }
  // Log lines from now on go to `fd` (PUT /logger).
  virtual Status redirect_log(UniqueFd fd) = 0;
  // The VM's own counters for the metrics file.
  virtual nlohmann::json metrics() = 0;
};

struct HttpResponse {
  int status = 204;
  std::string body;  // JSON, or empty for 204
};

enum class VmState { kNotStarted, kRunning, kPaused };
std::string_view to_string(VmState s);

class Api {
 public:
  // `virtio_slots`: the virtio devices the machine can attach
  // (arch::virtio_slot_count()). Drives and network interfaces together get
  // all but the rng's and the vsock's, so no configuration the API accepts
  // fails at the start for want of a slot, and none grows without bound.
  Api(std::string instance_id, VmBackend& backend, uint32_t virtio_slots)
      : id_(std::move(instance_id)),
        backend_(backend),
        max_attached_(virtio_slots > kOwnVirtioDevices ? virtio_slots - kOwnVirtioDevices : 0) {}
  static constexpr uint32_t kOwnVirtioDevices = 2;  // the rng and the vsock

  // Never throws; any failure is a 4xx with {"fault_message": ...}.
  HttpResponse handle(std::string_view method, std::string_view path, std::string_view body);

  // --config-file: the configuration as if PUT piece by piece, then started.
  Status configure_and_start(const VmConfig& config);

  VmState state() const;

 private:
  HttpResponse route(std::string_view method, std::string_view path, std::string_view body) REQUIRES(mu_);
  HttpResponse put_drive(std::string_view id, const nlohmann::json& body) REQUIRES(mu_);
  HttpResponse patch_drive(std::string_view id, const nlohmann::json& body) REQUIRES(mu_);
  HttpResponse put_network_interface(std::string_view id, const nlohmann::json& body) REQUIRES(mu_);
  HttpResponse action(const nlohmann::json& body) REQUIRES(mu_);
  HttpResponse vm_state(const nlohmann::json& body) REQUIRES(mu_);
  HttpResponse snapshot_create(const nlohmann::json& body) REQUIRES(mu_);
  HttpResponse snapshot_load(const nlohmann::json& body) REQUIRES(mu_);
  HttpResponse logger(const nlohmann::json& body) REQUIRES(mu_);
  HttpResponse metrics(const nlohmann::json& body) REQUIRES(mu_);
  Status start() REQUIRES(mu_);
  Status flush_metrics() REQUIRES(mu_);
  // A fault unless the VM is still being configured (not started, no snapshot loaded).
  std::optional<HttpResponse> require_configuring(std::string_view what) const REQUIRES(mu_);

  // A fault when one more drive or network interface would not fit.
  std::optional<HttpResponse> require_slot(std::string_view what) const REQUIRES(mu_);

  const std::string id_;
  VmBackend& backend_;
  const size_t max_attached_;  // drives and network interfaces together
  // Requests are served one at a time, as Firecracker's single API thread
  // does; mu_ guards the configuration and the state below.
  mutable Mutex mu_;
  VmState state_ GUARDED_BY(mu_) = VmState::kNotStarted;
  VmConfig config_ GUARDED_BY(mu_);
  // Something a snapshot load would overwrite was configured.
  bool configured_ GUARDED_BY(mu_) = false;
  bool logger_set_ GUARDED_BY(mu_) = false;
  UniqueFd metrics_fd_ GUARDED_BY(mu_);
  uint64_t requests_ GUARDED_BY(mu_) = 0;
  uint64_t faults_ GUARDED_BY(mu_) = 0;
};

// {"fault_message": message} as the body of a 4xx; bytes that are not
// UTF-8 are replaced, never thrown on.
std::string fault_body(std::string_view message);

// A log or metrics destination: a file (created 0600) or a FIFO a reader
// holds open, opened for appending without blocking.
Result<UniqueFd> open_output(const std::string& path);

}  // namespace snapvm::firecracker
