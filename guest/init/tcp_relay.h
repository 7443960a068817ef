// The host reaches a guest program's TCP port P as vsock port
// agent::kTcpRelayBase + P: a relay process per port accepts those vsock
// connections (from the host only) and joins each to 127.0.0.1:P. Images'
// programs listen on TCP; snapvm's port forwards and pools speak vsock.
#pragma once

#include <cstdint>
#include <string>

namespace snapvm::guest {

// Starts the relay for `port` in its own process (already running: done).
bool start_tcp_relay(uint16_t port, std::string& error);

// `probe-tcp PORT`: exits 0 when 127.0.0.1:PORT accepts a connection, else
// 1 (how the host asks whether a program is ready).
int probe_tcp_main(int argc, char** argv);

}  // namespace snapvm::guest
