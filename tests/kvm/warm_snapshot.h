// Warm snapshots for the KVM tests: each guest configuration is booted once
// per test process, snapshotted with its agent up, and restored afresh for
// every test that asks for it (VmOptions::Start::kWarmRestore).
#pragma once

#include <tl/expected.hpp>

#include <string>

#include "background_vm.h"

namespace snapvm::test {

// The snapshot of a booted guest of this configuration (vCPUs, RAM, kernel
// command line, disks' count, sizes and modes), booting and snapshotting it
// the first time it is asked for. Disks are booted as zero-filled stand-ins of
// the same size, so a test's own disks must be all zeros when its VM starts:
// the guest read their first blocks at boot and may hold them in its page
// cache. Fails with the reason; never falls back to a boot.
tl::expected<std::string, std::string> warm_snapshot(const VmOptions& options);

}  // namespace snapvm::test
