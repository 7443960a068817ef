// A guest that has said nothing on its console long after its boot began
// is reported once, with where its vCPUs are, instead of leaving its user
// with silence (a KVM that cannot run the guest, a kernel without the
// console driver, a wrong console= on the command line). The VM runs on:
// a quiet guest may just be slow.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <stop_token>
#include <string>

#include "vmm/vm_runner.h"

namespace snapvm {

// Waits `quiet_for` (or until `stop`); if `console_spoke` is still false
// then, reads each vCPU's place in a brief pause and says one line.
void report_silent_boot(VmRunner& runner, const std::atomic<bool>& console_spoke, std::chrono::milliseconds quiet_for,
                        std::stop_token stop, const std::function<void(const std::string&)>& say);

}  // namespace snapvm
