// The client side of a VM's control socket (docs/control-api.md): one JSON
// request line, one JSON reply line.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace snapvm {

// The reply of a request that succeeded ("ok": true); a refusal is an error
// carrying the server's message.
Result<nlohmann::json> control_request(const std::string& socket_path, const nlohmann::json& request);

}  // namespace snapvm
