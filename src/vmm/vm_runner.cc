#include "vmm/vm_runner.h"

#include <system_error>

#include <fmt/format.h>

#include "vmm/control_server.h"

namespace snapvm {

VmRunner::VmRunner(std::unique_ptr<Machine> machine, RunnerOptions options)
    : machine_(std::move(machine)), options_(std::move(options)) {}

Result<std::unique_ptr<VmRunner>> VmRunner::start(std::unique_ptr<Machine> machine, RunnerOptions options) {
  std::unique_ptr<VmRunner> r(new VmRunner(std::move(machine), std::move(options)));
  if (!r->options_.control_socket.empty()) {
    auto control = SNAPVM_TRY(ControlServer::start(r->options_.control_socket, *r->machine_,
                                                   {r->options_.name, r->options_.origin}));
    MutexLock lock(r->join_mu_);
    r->control_ = std::move(control);
  }
  VmRunner* self = r.get();
  try {
    r->thread_ = std::thread([self] {
      auto exit = self->machine_->run(self->options_.on_started);
      self->exit_ = std::move(exit);
      self->ended_ = true;
      // Guest work stops with the guest: nothing will answer it any more.
      self->companions_stop_.request_stop();
    });
  } catch (const std::system_error& e) {
    return make_error(ErrorCode::kIo, "start the VM's thread: {}", e.what());
  }
  return r;
}

VmRunner::~VmRunner() {
  machine_->request_stop();
  (void)wait();
}

void VmRunner::add_companion(Companion task) {
  MutexLock lock(mu_);
  try {
    companions_.emplace_back([task = std::move(task), stop = companions_stop_.get_token()] { task(stop); });
  } catch (const std::system_error& e) {
    // Its work (the guest's sync, a program's start) will not happen: the
    // VM must not run on as if it had.
    if (!companion_error_) companion_error_ = Error(ErrorCode::kIo, fmt::format("start a VMM thread: {}", e.what()));
    machine_->request_stop();
  }
}

void VmRunner::join_companions() {
  // A companion may add another while it ends: join until none is left,
  // never holding mu_ across a join (add_companion takes it).
  for (;;) {
    std::vector<std::jthread> done;
    {
      MutexLock lock(mu_);
      if (companions_.empty()) return;
      done.swap(companions_);
    }
    done.clear();  // joins each
  }
}

Result<ExitReason> VmRunner::wait() {
  {
    MutexLock lock(join_mu_);
    if (!joined_) {
      if (thread_.joinable()) thread_.join();
      joined_ = true;
      // Its socket goes with the run, as the VM can answer nothing more;
      // its event stream hears how the run ended first.
      if (control_) {
        const auto exit = exit_.value_or(Result<ExitReason>(ExitReason::kStopped));
        const ExitReport report = report_exit(exit, exit ? machine_->exit_detail() : std::string());
        control_->announce_exit(exit ? std::string(to_string(*exit)) : exit.error().describe(), report.status);
      }
      control_.reset();
    }
  }
  companions_stop_.request_stop();  // also when the thread never ran the machine
  join_companions();
  auto exit = exit_.value_or(Result<ExitReason>(ExitReason::kStopped));
  MutexLock lock(mu_);
  if (companion_error_ && exit && *exit == ExitReason::kStopped) return tl::unexpected(*companion_error_);
  return exit;
}

ExitReport VmRunner::wait_report() {
  auto exit = wait();
  return report_exit(exit, exit ? machine_->exit_detail() : std::string());
}

}  // namespace snapvm
