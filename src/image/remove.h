// Removing an image from the store: `snapvm image rm`.
//
// Each image owns its directory outright (its rootfs.ext4 and image.json;
// the store shares no blobs between images), so removing one frees all it
// holds. The directory first moves, in one rename, into a scratch
// directory of this process (scratch_dir.h), so a removal that is
// interrupted leaves the image either whole in place or in a scratch
// directory the next import sweeps away, never half of it under its name.
// A VM running from the image keeps its open rootfs.ext4 until it ends; the
// store records no users, so there is nothing else to wait for.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"

namespace snapvm::image {

struct Removed {
  std::string name;
  uint64_t bytes = 0;  // what its files held
};

// Removes `name` from `store`; kNotFound if there is no such image.
Result<Removed> remove_image(const std::string& store, const std::string& name);

}  // namespace snapvm::image
