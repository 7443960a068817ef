// A machine's snapshots: its state captured from the parts, and the three
// ways it is written (full, diff, Firecracker's two files).
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <chrono>

#include "base/version.h"
#include "devices/virtio/vsock.h"
#include "snapshot/raw_memory.h"
#include "snapshot/reader.h"
#include "state/external_ram.h"
#include "vmm/machine.h"
#include "vmm/machine_parts.h"

namespace snapvm {
namespace {

int64_t now_ns(clockid_t clock) {
  timespec now{};
  ::clock_gettime(clock, &now);
  return int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

}  // namespace

Result<state::SnapshotState> Machine::Parts::capture_state() const {
  state::SnapshotState st;
  st.arch = arch::snapshot_arch();
  st.machine.vcpu_count = static_cast<uint32_t>(vcpus->size());
  for (size_t i = 0; i < ram.size(); ++i) st.machine.memory.push_back({ram_layout[i].gpa, ram[i].size()});
  st.machine.kernel_cmdline = config.cmdline;
  devices->save(st);
  for (const auto& v : vcpus->vcpus()) st.vcpus.push_back(SNAPVM_TRY(platform->capture_vcpu(v)));
  st.arch_vm = SNAPVM_TRY(platform->capture_vm(vcpus->vcpus()));
  st.port_forwards = devices->vsock() != nullptr ? devices->vsock()->forwards() : std::vector<state::PortForward>{};
  st.clock = platform->clock_of(st.vcpus.front());
  st.clock.host_realtime_ns = now_ns(CLOCK_REALTIME);
  st.clock.host_monotonic_ns = now_ns(CLOCK_MONOTONIC);
  st.host = platform->host_identity_of(st.vcpus.front());
  utsname u{};
  ::uname(&u);
  st.host.kernel_release = u.release;
  st.host.host_page_size = static_cast<uint32_t>(::sysconf(_SC_PAGESIZE));
  st.creator = state::Creator{kProgramVersion, st.clock.host_realtime_ns};
  return st;
}

Status Machine::Parts::check_diff_base(const std::string& diff_from) const {
  if (!dirty) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "a diff snapshot needs dirty-page tracking: start the VM with --track-dirty");
  }
  return dirty->check_diff_base(diff_from);
}

Result<WriteStats> Machine::Parts::write_snapshot(const std::string& path, std::optional<DiffInProgress> diff,
                                                  LiveSnapshot* timing, const std::function<void()>& resume_early) {
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  auto t0 = Clock::now();
  state::SnapshotState st = SNAPVM_TRY(capture_state());
  auto t1 = Clock::now();
  if (dirty) SNAPVM_CHECK_OK(dirty->collect(*vm, ram));
  auto t2 = Clock::now();
  std::vector<RamSource> sources = ram_sources();
  WriteStats stats;
  if (diff && resume_early && dirty->small_enough_to_copy(ram_bytes())) {
    // Copy the dirty pages, let the guest run, write from the copy: the
    // pause is a memcpy of the changed pages, not their checksummed write.
    // since_base stays as collected while the guest runs: only a snapshot
    // collects into it, under snapshot_mu, which this holds; what the guest
    // writes meanwhile waits in KVM's log for the next interval.
    auto copy = SNAPVM_TRY(copy_dirty_pages(sources, dirty->since_base()));
    auto t3 = Clock::now();
    resume_early();
    stats = SNAPVM_TRY(std::move(*diff).finish(state::to_contents(st), sources, dirty->since_base(), {}, &copy));
    if (timing != nullptr) {
      timing->copy_ms = ms(t2, t3);
      timing->write_ms = ms(t3, Clock::now());
      timing->written_while_running = true;
    }
  } else if (diff) {
    stats = SNAPVM_TRY(std::move(*diff).finish(state::to_contents(st), sources, dirty->since_base()));
  } else {
    stats = SNAPVM_TRY(write_full(path, state::to_contents(st), sources));
  }
  if (dirty) {
    // On failure the pages stay counted against the old base; only a
    // written snapshot becomes the new one.
    auto written = SnapshotFile::open(path);
    if (!written) return tl::unexpected(std::move(written.error()).context("reopen the new snapshot"));
    dirty->new_base(path, written->header().metadata_checksum);
  }
  if (timing != nullptr) {
    timing->capture_ms = ms(t0, t1);
    timing->dirty_log_ms = ms(t1, t2);
    if (!timing->written_while_running) timing->write_ms = ms(t2, Clock::now());
  }
  return stats;
}

Result<WriteStats> Machine::snapshot(const std::string& path, const std::string& diff_from) {
  MutexLock one_at_a_time(p_->snapshot_mu);
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "snapshot needs a paused VM");
  std::optional<DiffInProgress> diff;
  if (!diff_from.empty()) {
    SNAPVM_CHECK_OK(p_->check_diff_base(diff_from));
    diff.emplace(SNAPVM_TRY(DiffInProgress::prepare(path, diff_from)));
  }
  return p_->write_snapshot(path, std::move(diff));
}

Result<Machine::LiveSnapshot> Machine::snapshot_live(const std::string& path, const std::string& diff_from,
                                                     bool resume_after) {
  using Clock = std::chrono::steady_clock;
  MutexLock one_at_a_time(p_->snapshot_mu);
  auto start = Clock::now();
  std::optional<DiffInProgress> diff;
  if (!diff_from.empty()) {
    SNAPVM_CHECK_OK(p_->check_diff_base(diff_from));
    diff.emplace(SNAPVM_TRY(DiffInProgress::prepare(path, diff_from)));  // the guest still runs
  }
  auto paused_at = Clock::now();
  if (!paused()) SNAPVM_CHECK_OK(pause());
  LiveSnapshot live;
  std::optional<Clock::time_point> resumed_at;
  std::function<void()> resume_early;
  if (resume_after) {
    resume_early = [&] {
      (void)resume();
      resumed_at = Clock::now();
    };
  }
  auto stats = p_->write_snapshot(path, std::move(diff), &live, resume_early);
  if (resume_after && !resumed_at) (void)resume();
  auto end = Clock::now();
  if (!stats) return tl::unexpected(std::move(stats.error()));
  live.stats = *stats;
  live.pause_ms = std::chrono::duration<double, std::milli>(resumed_at.value_or(end) - paused_at).count();
  live.total_ms = std::chrono::duration<double, std::milli>(end - start).count();
  return live;
}

Result<Machine::TwoFileStats> Machine::snapshot_two_files(const std::string& state_path, const std::string& mem_path,
                                                          bool diff) {
  MutexLock one_at_a_time(p_->snapshot_mu);
  if (!paused()) return make_error(ErrorCode::kFailedPrecondition, "snapshot needs a paused VM");
  if (state_path == mem_path) return make_error(ErrorCode::kInvalidArgument, "the state and memory files must differ");
  if (diff && !p_->dirty) {
    return make_error(ErrorCode::kFailedPrecondition,
                      "a Diff snapshot needs dirty-page tracking (track_dirty_pages, or --track-dirty)");
  }
  state::SnapshotState st = SNAPVM_TRY(p_->capture_state());
  if (p_->dirty) SNAPVM_CHECK_OK(p_->dirty->collect(*p_->vm, p_->ram));
  std::vector<std::pair<uint64_t, uint64_t>> regions;
  for (const auto& m : st.machine.memory) regions.emplace_back(m.gpa, m.size);
  st.external_ram = state::external_ram_for(regions);
  std::vector<uint64_t> offsets;
  for (const auto& r : st.external_ram->regions) offsets.push_back(r.file_offset);
  TwoFileStats stats;
  // Memory first: a state file is only ever committed next to the memory it describes.
  std::span<const DirtyBitmap> only;
  if (diff) only = p_->dirty->since_base();
  stats.memory = SNAPVM_TRY(write_raw_memory(mem_path, p_->ram_sources(), offsets, only));
  stats.state = SNAPVM_TRY(write_full(state_path, state::to_contents(st), {}));
  if (p_->dirty) {
    // The next Diff counts from here; a failed write above keeps the pages
    // counted. Native diffs need a base of their own layout again.
    p_->dirty->new_base({}, 0);
  }
  return stats;
}

}  // namespace snapvm
