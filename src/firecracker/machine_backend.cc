#include "firecracker/machine_backend.h"

#include <unistd.h>

#include <fmt/format.h>

#include "arch/platform.h"
#include "firecracker/api_paths.h"
#include "sandbox/seccomp.h"

namespace snapvm::firecracker {
namespace {

// The machine opens these by path on the VMM thread; opened once here first
// (api_paths.h), a FIFO or a device named as a kernel or a disk is one 400
// instead of a VMM thread blocked in open() or read(). (Replacing the file
// between this check and the machine's open takes write access to its
// directory, which already lets one change what the guest boots or reads.)
Status check_input_paths(const MachineConfig& c) {
  SNAPVM_CHECK_OK(open_api_input(c.kernel_path, ApiInput::kFile, false, "kernel_image_path"));
  if (!c.initrd_path.empty()) SNAPVM_CHECK_OK(open_api_input(c.initrd_path, ApiInput::kFile, false, "initrd_path"));
  for (const auto& d : c.disks) SNAPVM_CHECK_OK(open_api_input(d.path, ApiInput::kDrive, !d.read_only, "path_on_host"));
  return {};
}

}  // namespace

std::vector<size_t> disk_order(const VmConfig& config) {
  std::vector<size_t> order(config.drives.size());
  size_t next = 0;
  for (bool root : {true, false}) {
    for (size_t i = 0; i < config.drives.size(); ++i) {
      if (config.drives[i].is_root_device == root) order[i] = next++;
    }
  }
  return order;
}

Result<MachineConfig> machine_config_of(const VmConfig& config) {
  if (!config.boot_source) {
    return make_error(ErrorCode::kFailedPrecondition, "InstanceStart: no boot source; PUT /boot-source first");
  }
  MachineConfig c;
  c.kernel_path = config.boot_source->kernel_image_path;
  c.initrd_path = config.boot_source->initrd_path.value_or("");
  c.cmdline = config.boot_source->boot_args.value_or(std::string(arch::default_cmdline()));
  c.mem_bytes = config.machine.mem_size_mib << 20;
  c.vcpus = config.machine.vcpu_count;
  c.track_dirty = config.machine.track_dirty_pages;
  const std::vector<size_t> order = disk_order(config);
  c.disks.resize(config.drives.size());
  for (size_t i = 0; i < config.drives.size(); ++i) {
    const auto& d = config.drives[i];
    c.disks[order[i]] = {d.path_on_host, d.is_read_only, d.drive_id};
    if (!d.is_root_device) continue;
    // What Firecracker adds for its root device.
    c.cmdline += d.partuuid ? " root=PARTUUID=" + *d.partuuid : std::string(" root=/dev/vda");
    c.cmdline += d.is_read_only ? " ro" : " rw";
  }
  for (const auto& n : config.network_interfaces) {
    MachineConfig::Net net;
    net.tap = n.host_dev_name;
    net.id = n.iface_id;
    if (n.guest_mac) net.mac = SNAPVM_TRY(virtio::parse_mac(*n.guest_mac));
    c.nets.push_back(std::move(net));
  }
  if (config.vsock) {
    c.vsock_path = config.vsock->uds_path;
    c.guest_cid = config.vsock->guest_cid;
  }
  return c;
}

Status MachineBackend::on_vmm_thread(std::function<Status()> build) {
  MutexLock lock(mu_);
  if (stopping_) return make_error(ErrorCode::kFailedPrecondition, "the VMM is shutting down");
  if (handed_over_ || built_ || job_) return make_error(ErrorCode::kFailedPrecondition, "the microVM is already built");
  job_ = std::move(build);
  cv_.notify_all();
  cv_.wait(mu_, [&]() REQUIRES(mu_) { return job_result_.has_value() || stopping_; });
  if (!job_result_) return make_error(ErrorCode::kFailedPrecondition, "the VMM is shutting down");
  Status r = std::move(*job_result_);
  job_result_.reset();
  return r;
}

int MachineBackend::run_vmm_thread() {
  // The machine is built from API input (and a snapshot's contents) here:
  // filtered before the first job, and every thread it starts inherits it.
  sandbox::enter_or_die(sandbox::ThreadKind::kBuild);
  std::unique_ptr<Machine> built;
  for (;;) {
    std::function<Status()> job;
    {
      MutexLock lock(mu_);
      cv_.wait(mu_, [&]() REQUIRES(mu_) { return job_ != nullptr || stopping_; });
      if (stopping_) return 0;
      job = std::move(job_);
      job_ = nullptr;
    }
    Status status = job();  // sets built_ on success
    MutexLock lock(mu_);
    built = std::move(built_);
    handed_over_ = built != nullptr;
    if (built) break;
    job_result_ = std::move(status);
    cv_.notify_all();
  }
  // The start is answered once the vCPUs run, so a pause right after it
  // finds them; the API sees the machine from then on.
  Machine* m = built.get();
  RunnerOptions options;
  options.on_started = [this, m] {
    sandbox::enter_or_die(sandbox::ThreadKind::kMain);
    MutexLock lock(mu_);
    machine_ = m;
    if (stopping_) m->request_stop();  // stop() came while it started
    job_result_ = Status{};
    cv_.notify_all();
  };
  auto runner = VmRunner::start(std::move(built), std::move(options));
  if (!runner) {
    MutexLock lock(mu_);
    job_result_ = Status(tl::unexpected(runner.error()));
    cv_.notify_all();
    return 1;
  }
  runner_ = std::move(*runner);
  ExitReport report = runner_->wait_report();
  {
    MutexLock lock(mu_);
    if (machine_ == nullptr) {
      // The run failed before its threads started: the waiting request hears why.
      job_result_ = report.status == 0 ? Status{} : make_error(ErrorCode::kIo, "{}", report.line);
      cv_.notify_all();
    }
  }
  std::fflush(stdout);
  if (!report.line.empty()) fmt::print(stderr, "{}\n", report.line);
  // Firecracker itself ends with status 0 when its guest reboots; its
  // users' scripts expect that of this door.
  return report.status == kExitGuestReset ? 0 : report.status;
}

void MachineBackend::stop() {
  MutexLock lock(mu_);
  stopping_ = true;
  if (machine_ != nullptr) machine_->request_stop();
  cv_.notify_all();
}

Machine* MachineBackend::machine() {
  MutexLock lock(mu_);
  return machine_;
}

Status MachineBackend::start(const VmConfig& config) {
  MachineConfig c = SNAPVM_TRY(machine_config_of(config));
  if (auto s = check_input_paths(c); !s) return tl::unexpected(std::move(s.error()).context("InstanceStart"));
  disk_order_ = disk_order(config);
  c.console = console_;
  return on_vmm_thread([this, c]() -> Status {
    auto m = Machine::create(c);
    if (!m) return tl::unexpected(std::move(m.error()).context("InstanceStart"));
    MutexLock lock(mu_);
    built_ = std::move(*m);
    return {};
  });
}

Status MachineBackend::load_snapshot(const SnapshotLoadBody& body) {
  RestoreOptions o;
  o.console = console_;
  o.track_dirty = body.track_dirty_pages;
  if (body.vsock_uds_override) o.vsock_path = *body.vsock_uds_override;
  // Firecracker reattaches the snapshot's taps unless told otherwise.
  o.recorded_taps = true;
  o.taps_by_id = body.network_overrides;
  RestoreOptions::MemoryFile memory;
  memory.backend = body.backend == SnapshotLoadBody::Backend::kFile ? RestoreOptions::MemoryFile::Backend::kFile
                                                                    : RestoreOptions::MemoryFile::Backend::kPageServer;
  memory.path = body.backend_path;
  memory.fault_timeout = page_fault_timeout_;
  o.memory = memory;
  const bool resume = body.resume_vm;
  const std::string path = body.snapshot_path;
  SNAPVM_CHECK_OK(on_vmm_thread([this, o, resume, path]() -> Status {
    auto m = Machine::restore(path, o);
    if (!m) return tl::unexpected(std::move(m.error()).context("snapshot/load"));
    if (!resume) (*m)->start_paused();
    MutexLock lock(mu_);
    built_ = std::move(*m);
    return {};
  }));
  // The snapshot's disks keep their order: drive i is disk i.
  disk_order_.resize(machine()->disks().size());
  for (size_t i = 0; i < disk_order_.size(); ++i) disk_order_[i] = i;
  return {};
}

std::vector<DriveBody> MachineBackend::loaded_drives() {
  std::vector<DriveBody> out;
  Machine* m = machine();
  if (m == nullptr) return out;
  for (const auto& d : m->disks()) {
    DriveBody b;
    b.drive_id = d.id;
    b.path_on_host = d.path;
    b.is_read_only = d.read_only;  // which one was the root the snapshot does not say
    out.push_back(std::move(b));
  }
  return out;
}

Status MachineBackend::pause() {
  Machine* m = machine();
  if (m == nullptr) return make_error(ErrorCode::kFailedPrecondition, "the microVM is not started");
  return m->pause();
}

Status MachineBackend::resume() {
  Machine* m = machine();
  if (m == nullptr) return make_error(ErrorCode::kFailedPrecondition, "the microVM is not started");
  return m->resume();
}

Status MachineBackend::create_snapshot(const SnapshotCreateBody& body) {
  Machine* m = machine();
  if (m == nullptr) return make_error(ErrorCode::kFailedPrecondition, "the microVM is not started");
  auto r = m->snapshot_two_files(body.snapshot_path, body.mem_file_path, body.diff);
  if (!r) return tl::unexpected(std::move(r.error()).context("snapshot/create"));
  return {};
}

// The machine's power button (arm64: gpio-keys, x86_64: ACPI) sends the
// guest KEY_POWER, which Linux userspaces turn into a clean shutdown, as
// Firecracker's Ctrl+Alt+Del does on x86_64.
Status MachineBackend::send_ctrl_alt_del() {
  Machine* m = machine();
  if (m == nullptr) return make_error(ErrorCode::kFailedPrecondition, "the microVM is not started");
  auto r = m->press_power_button();
  if (!r) return tl::unexpected(std::move(r.error()).context("SendCtrlAltDel"));
  return {};
}

Status MachineBackend::replace_drive(size_t index, const std::string& path) {
  Machine* m = machine();
  if (m == nullptr) return make_error(ErrorCode::kFailedPrecondition, "the microVM is not started");
  // The machine orders disks root first (machine_config_of); the API counts
  // in the order drives were put.
  if (index >= disk_order_.size()) {
    return make_error(ErrorCode::kNotFound, "drive: the microVM has no drive {}", index);
  }
  const bool writable = !m->disks()[disk_order_[index]].read_only;
  if (auto s = open_api_input(path, ApiInput::kDrive, writable, "path_on_host"); !s) {
    return tl::unexpected(std::move(s.error()).context("drive"));
  }
  auto r = m->replace_disk(disk_order_[index], path);
  if (!r) return tl::unexpected(std::move(r.error()).context("drive"));
  return {};
}

Status MachineBackend::redirect_log(UniqueFd fd) {
  // snapvm's log lines are its stderr; dup3 as the API's filter allows it.
  if (::dup3(fd.get(), STDERR_FILENO, 0) < 0) return errno_error("logger: redirect the log");
  return {};
}

nlohmann::json MachineBackend::metrics() {
  Machine* m = machine();
  if (m == nullptr) return nlohmann::json::object();
  return {{"vcpus", m->vcpu_count()}, {"mem_bytes", m->mem_bytes()}, {"tracking_dirty_pages", m->tracking_dirty()}};
}

}  // namespace snapvm::firecracker
