// The vCPUs of a machine and their threads: run, pause, resume, stop, and
// how the run ended. It owns the kick (a signal that only interrupts
// KVM_RUN) and the pause protocol; what an exit means for devices it leaves
// to an I/O handler, and what a stopped vCPU says to the architecture.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "arch/platform.h"
#include "base/result.h"
#include "base/thread_annotations.h"
#include "kvm/kvm.h"
#include "vmm/exit_reason.h"

namespace snapvm {


class VcpuSet {
 public:
  // Serves an MMIO or port-I/O exit on the vCPU thread that took it (fills
  // a read's bytes in `exit.data`).
  using IoHandler = std::function<void(arch::Exit& exit)>;

  // `platform` describes a vCPU that reset; it must outlive the set.
  VcpuSet(std::vector<kvm::Vcpu> vcpus, const arch::Platform& platform, IoHandler io);
  // Stops and joins the threads.
  ~VcpuSet();
  VcpuSet(const VcpuSet&) = delete;
  VcpuSet& operator=(const VcpuSet&) = delete;

  std::span<const kvm::Vcpu> vcpus() const { return vcpus_; }
  size_t size() const { return vcpus_.size(); }

  // One thread per vCPU until the guest powers off, resets or crashes, a
  // vCPU fails, or request_stop(). `on_started` runs on the calling thread
  // once the threads exist.
  // (run, pause and loop wait on cv_ through std::unique_lock, which the
  // analysis cannot follow: checked by ThreadSanitizer instead.)
  Result<ExitReason> run(const std::function<void()>& on_started) NO_THREAD_SAFETY_ANALYSIS;
  std::string exit_detail() const EXCLUDES(mu_);
  // Thread-safe: makes run() return kStopped soon.
  void request_stop() EXCLUDES(mu_);
  // Ends the run as a device saw the guest ask (ACPI sleep, i8042 reset).
  void finish(std::optional<ExitReason> reason, std::optional<Error> err) EXCLUDES(mu_);

  // Every vCPU parked outside KVM_RUN within `timeout`, or none (rolled
  // back: the VM runs on and the error says so). Only while run() runs.
  // `paused_here` (if given) tells whether this call paused the VM, or
  // found it paused already.
  Status pause(std::chrono::milliseconds timeout, bool* paused_here = nullptr) NO_THREAD_SAFETY_ANALYSIS;
  void resume() EXCLUDES(mu_);
  // Before run(): the vCPUs start parked.
  void start_paused();
  bool paused() const EXCLUDES(mu_);

 private:
  void loop(size_t index) NO_THREAD_SAFETY_ANALYSIS;
  void kick_all() EXCLUDES(mu_);

  std::vector<kvm::Vcpu> vcpus_;
  const arch::Platform& platform_;
  IoHandler io_;

  std::atomic<bool> stopping_{false};
  std::atomic<bool> pausing_{false};
  // Guards the run's threads and its outcome; cv_ waits on it for parking
  // and for the end of the run.
  mutable Mutex mu_;
  std::condition_variable_any cv_;
  // The threads themselves belong to run(), which starts and joins them;
  // others reach them only through handles_, to kick them.
  std::vector<std::thread> threads_;
  std::vector<pthread_t> handles_ GUARDED_BY(mu_);
  // Per thread, set when its loop has returned: it takes no more kicks, and
  // no signal may reach a thread that may have been joined.
  std::vector<bool> exited_ GUARDED_BY(mu_);
  size_t parked_ GUARDED_BY(mu_) = 0;
  std::optional<ExitReason> exit_ GUARDED_BY(mu_);
  std::string exit_detail_ GUARDED_BY(mu_);  // how the exit came about, when the arch says (a triple fault)
  std::optional<Error> error_ GUARDED_BY(mu_);
};

}  // namespace snapvm
