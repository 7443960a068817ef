// The guest agent: serves exec and file transfer requests from the host over
// vsock (protocol in src/agent/protocol.h, docs/agent-protocol.md).
#pragma once

namespace snapvm::guest {

// Opens the agent's listening vsock socket; -1 when vsock is unavailable.
int agent_listen();

// Serves each connection on `listener` in a child process; never returns.
// Writes its pid to /run/snapvm-agent.pid.
[[noreturn]] void serve_agent(int listener);

}  // namespace snapvm::guest
