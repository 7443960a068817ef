// The client side of a VM's control socket (docs/control-api.md): one JSON
// request line, one JSON reply line.
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace snapvm {

// The reply of a request that succeeded ("ok": true); a refusal is an error
// carrying the server's message. A reply that has not come within `timeout`
// is an error (0: wait as long as the request takes: a snapshot of a large
// guest may take minutes).
Result<nlohmann::json> control_request(const std::string& socket_path, const nlohmann::json& request,
                                       std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

}  // namespace snapvm
