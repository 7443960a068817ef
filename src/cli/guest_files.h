// The guest side `snapvm guest build` makes (Debian's kernel and an
// initramfs with snapvm's init and agent), which run, bake and image runs
// boot when no --kernel is given.
#pragma once

#include <map>
#include <string>

#include "base/result.h"

namespace snapvm::cli {

struct GuestFiles {
  std::string dir, kernel, initrd;
  std::map<std::string, std::string> manifest;  // kernel_package, kernel_version, built, ...
};

// SNAPVM_GUEST_DIR, or /var/lib/snapvm/guest.
std::string guest_dir();

// The built guest in `dir`, its files checked against the SHA-256 sums
// recorded when it was built; an error that says to run `snapvm guest
// build` when there is none.
Result<GuestFiles> load_guest_files(const std::string& dir);

// Fills an empty `kernel` (and then an empty `initrd`) with the built
// guest's files. A kernel the user named is left alone, and so is its
// initrd, given or not.
Status default_to_built_guest(std::string& kernel, std::string& initrd);

// Where snapvm's own support files are: <dir of this executable>/../lib/snapvm
// (installed, and in a build tree), then the executable's own directory
// (a build tree's bin/). Empty if `name` is in neither.
std::string find_support_file(const std::string& name);

}  // namespace snapvm::cli
