// The guest agent: serves exec and file transfer requests from the host over
// vsock (protocol in src/agent/protocol.h, docs/agent-protocol.md).
#pragma once

namespace snapvm::guest {

// Listens on the agent's vsock port and serves each connection in a child
// process. Returns only if the listening socket cannot be set up.
int run_agent_server();

}  // namespace snapvm::guest
