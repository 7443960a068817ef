#include "vmm/vcpu_set.h"

#include <signal.h>

#include <cstring>
#include <mutex>

#include "sandbox/seccomp.h"

namespace snapvm {
namespace {

// A signal that only interrupts KVM_RUN; its handler does nothing.
int kick_signal() { return SIGRTMIN + 1; }

void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    ::sigaction(kick_signal(), &sa, nullptr);
  });
}

}  // namespace

VcpuSet::VcpuSet(std::vector<kvm::Vcpu> vcpus, const arch::Platform& platform, IoHandler io)
    : vcpus_(std::move(vcpus)), platform_(platform), io_(std::move(io)) {}

VcpuSet::~VcpuSet() {
  request_stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void VcpuSet::kick_all() {
  MutexLock lock(mu_);
  for (size_t i = 0; i < handles_.size(); ++i) {
    if (exited_[i]) continue;
    vcpus_[i].run_data()->immediate_exit = 1;
    ::pthread_kill(handles_[i], kick_signal());
  }
}

void VcpuSet::finish(std::optional<ExitReason> reason, std::optional<Error> err) {
  {
    MutexLock lock(mu_);
    if (!exit_ && !error_) {
      exit_ = reason;
      if (err) error_ = std::move(err);
    }
  }
  cv_.notify_all();
  stopping_ = true;
  kick_all();
}

void VcpuSet::request_stop() {
  {
    MutexLock lock(mu_);  // no lost wakeup between run()'s check and wait
    stopping_ = true;
  }
  cv_.notify_all();
  kick_all();
}

void VcpuSet::loop(size_t index) {
  const kvm::Vcpu& vcpu = vcpus_[index];
  kvm_run* run = vcpu.run_data();
  bool io_pending = false;
  while (!stopping_.load()) {
    if (pausing_.load()) {
      if (io_pending) {
        // KVM completes an MMIO or port access (loads a read's value, steps
        // past the instruction) only on the next KVM_RUN. Do that now, with
        // immediate_exit so no guest instruction runs, or the registers a
        // snapshot captures would be half-way through an instruction.
        run->immediate_exit = 1;
        auto r = vcpu.run();
        if (!r) {
          finish(std::nullopt, std::move(r.error()));
          return;
        }
        io_pending = false;
      }
      std::unique_lock<Mutex> lock(mu_);
      ++parked_;
      cv_.notify_all();
      cv_.wait(lock, [&]() REQUIRES(mu_) { return !pausing_.load() || stopping_.load(); });
      --parked_;
      // A pause that came while this thread slept (resume then pause at
      // once) set immediate_exit again; leaving it set would make every
      // KVM_RUN return at once and the guest never run. Cleared under the
      // lock, so a pause from now on sets it after this and is seen.
      if (!stopping_.load()) run->immediate_exit = 0;
      continue;
    }
    auto r = vcpu.run();
    if (!r) {
      finish(std::nullopt, std::move(r.error()));
      return;
    }
    io_pending = false;
    if (!*r) {
      // Kicked. A pause that was rolled back (it timed out) left
      // immediate_exit set; clear it unless a pause or stop wants it now.
      // Under mu_, so a pause that sets it concurrently is not undone.
      MutexLock lock(mu_);
      if (!pausing_.load() && !stopping_.load()) run->immediate_exit = 0;
      continue;
    }
    arch::Exit e = arch::decode_exit(*run, static_cast<uint32_t>(index));
    switch (e.kind) {
      case arch::Exit::Kind::kMmio:
      case arch::Exit::Kind::kPortIo:
        io_pending = true;
        io_(e);
        break;
      case arch::Exit::Kind::kPowerOff: finish(ExitReason::kPowerOff, std::nullopt); return;
      case arch::Exit::Kind::kReset:
        if (!e.error.empty()) {
          // Out of KVM_RUN, so its registers are readable: where it died.
          std::string where = platform_.describe_vcpu(vcpu);
          MutexLock lock(mu_);
          if (exit_detail_.empty()) exit_detail_ = e.error + " at " + where;
        }
        finish(ExitReason::kReset, std::nullopt);
        return;
      case arch::Exit::Kind::kCrash: finish(ExitReason::kCrash, std::nullopt); return;
      case arch::Exit::Kind::kIgnore: break;
      case arch::Exit::Kind::kFail:
        finish(std::nullopt, Error(ErrorCode::kIo, e.error));
        return;
    }
  }
}

Result<ExitReason> VcpuSet::run(const std::function<void()>& on_started) {
  install_kick_handler();
  {
    MutexLock lock(mu_);
    for (size_t i = 0; i < vcpus_.size(); ++i) {
      try {
        threads_.emplace_back([this, i] {
          sandbox::enter_or_die(sandbox::ThreadKind::kVcpu);
          loop(i);
          MutexLock done(mu_);
          exited_[i] = true;
        });
      } catch (const std::system_error& e) {
        error_ = Error(ErrorCode::kIo, "create vCPU thread", e.code().value());
        break;
      }
      // The thread waits for mu_ before it can mark itself exited, so its
      // slot exists by then.
      handles_.push_back(threads_.back().native_handle());
      exited_.push_back(false);
    }
  }
  bool failed;
  {
    MutexLock lock(mu_);
    failed = error_.has_value();
  }
  if (failed) request_stop();
  if (on_started) on_started();
  {
    std::unique_lock<Mutex> lock(mu_);
    cv_.wait(lock, [&]() REQUIRES(mu_) { return exit_.has_value() || error_.has_value() || stopping_.load(); });
  }
  stopping_ = true;
  kick_all();
  for (auto& t : threads_) t.join();  // each marked exited before it ends
  threads_.clear();
  MutexLock lock(mu_);
  handles_.clear();
  exited_.clear();
  if (error_) return tl::unexpected(*error_);
  return exit_.value_or(ExitReason::kStopped);
}

std::string VcpuSet::exit_detail() const {
  MutexLock lock(mu_);
  return exit_detail_;
}

Status VcpuSet::pause(std::chrono::milliseconds timeout, bool* paused_here) {
  if (paused_here != nullptr) *paused_here = false;
  std::unique_lock<Mutex> lock(mu_);
  if (handles_.empty()) return make_error(ErrorCode::kFailedPrecondition, "the VM is not running");
  if (pausing_) return {};
  pausing_ = true;
  for (size_t i = 0; i < handles_.size(); ++i) {
    vcpus_[i].run_data()->immediate_exit = 1;
    ::pthread_kill(handles_[i], kick_signal());
  }
  const size_t running = handles_.size();
  auto done = [&]() REQUIRES(mu_) { return parked_ == running || stopping_.load(); };
  // No budget, no wait: a vCPU parks only under mu_, held here since the
  // kick, so a 0 ms pause always rolls back (a wait_for(0) would let go of
  // mu_ for a moment, and then fast vCPUs could all park in it).
  bool all = timeout.count() <= 0 ? done() : cv_.wait_for(lock, timeout, done);
  if (!all) {
    // Roll back rather than leave some vCPUs parked and the rest running:
    // the VM is as it was before the request.
    size_t parked = parked_;
    pausing_ = false;
    lock.unlock();
    cv_.notify_all();
    return make_error(ErrorCode::kIo, "pause: only {} of {} vCPUs left KVM_RUN within {} ms; the VM keeps running",
                      parked, running, timeout.count());
  }
  if (stopping_) return make_error(ErrorCode::kFailedPrecondition, "the VM stopped while pausing");
  if (paused_here != nullptr) *paused_here = true;
  return {};
}

void VcpuSet::start_paused() { pausing_ = true; }

void VcpuSet::resume() {
  {
    MutexLock lock(mu_);
    pausing_ = false;
  }
  cv_.notify_all();
}

bool VcpuSet::paused() const {
  MutexLock lock(mu_);
  return pausing_ && parked_ == handles_.size() && !handles_.empty();
}

}  // namespace snapvm
