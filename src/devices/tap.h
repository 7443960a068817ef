// Host tap devices for virtio-net: opened non-blocking with virtio's
// 12-byte header on every frame (IFF_VNET_HDR), so offloads pass through.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace snapvm {

// Attaches to the tap device `name`, creating it if the caller may
// (CAP_NET_ADMIN); an existing tap must be owned by the caller or open to
// it (ip tuntap add NAME mode tap user UID).
Result<UniqueFd> open_tap(const std::string& name);

// Tells the tap which offloads the guest accepts on receive, from the
// virtio-net features it negotiated (TUNSETOFFLOAD).
Status set_tap_offloads(int tap, uint64_t driver_features);

}  // namespace snapvm
