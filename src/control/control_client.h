// The client side of a VM's control socket (docs/control-api.md): one JSON
// request line, one JSON reply line.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace snapvm {

// The reply of a request that succeeded ("ok": true); a refusal is an error
// carrying the server's message. A reply that has not come within `timeout`
// is an error (0: wait as long as the request takes: a snapshot of a large
// guest may take minutes). Errors name the socket and its server as `peer`
// says: a pool's socket speaks the same protocol, but is no VM's.
struct ControlPeer {
  std::string_view socket = "the VM's control socket";
  std::string_view server = "the VM";
};
Result<nlohmann::json> control_request(const std::string& socket_path, const nlohmann::json& request,
                                       std::chrono::milliseconds timeout = std::chrono::milliseconds(0),
                                       const ControlPeer& peer = {});

}  // namespace snapvm
