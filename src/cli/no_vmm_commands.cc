// Builds for an architecture without a VMM yet (x86_64 today): the snapshot
// tools work, and --help says where VMs run.
#include "cli/vmm_commands.h"

namespace snapvm::cli {

std::function<int()> register_vmm_commands(CLI::App& app) {
  app.footer(
      "This build has no VMM for this architecture yet (arm64 comes first). On a machine without an arm64\n"
      "KVM host, tools/testhost/run.sh boots one under emulation; tools/demo.sh shows the way.");
  return [] { return -1; };
}

}  // namespace snapvm::cli
