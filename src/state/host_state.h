// Records about the host side of a snapshot: the guest clock at capture, the
// host it was taken on, host port forwards, and who wrote the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/byte_codec.h"

namespace snapvm::state {

struct ClockState {
  uint64_t guest_counter = 0;         // virtual counter (arm64 CNTVCT) at capture
  uint64_t counter_frequency_hz = 0;  // CNTFRQ
  int64_t host_realtime_ns = 0;       // CLOCK_REALTIME at capture
  int64_t host_monotonic_ns = 0;      // CLOCK_MONOTONIC at capture (same boot only)
  bool operator==(const ClockState&) const = default;
};

struct IdentityReg {
  uint64_t id = 0;  // e.g. MIDR_EL1's KVM register id
  uint64_t value = 0;
  bool operator==(const IdentityReg&) const = default;
};

// What must match for state to load: a 6.1 arm64 snapshot restores only on
// the same CPU model (invariant ID registers).
struct HostIdentity {
  std::vector<IdentityReg> cpu_regs;
  std::string kernel_release;  // uname -r
  std::string cpu_model;       // human-readable, for error messages
  uint32_t host_page_size = 0;
  bool operator==(const HostIdentity&) const = default;
};

// A host listener forwarding to a guest vsock port (the seed's vsock
// listener records, grown by a bind address).
struct PortForward {
  uint32_t guest_cid = 0;
  uint32_t guest_port = 0;
  uint32_t host_port = 0;
  uint16_t family = 0;       // AF_INET, AF_INET6, AF_UNIX
  uint16_t socket_type = 0;  // SOCK_STREAM, SOCK_DGRAM
  std::string host_address;  // "127.0.0.1" by default
  bool operator==(const PortForward&) const = default;
};

struct Creator {
  std::string program;  // "snapvm 0.1.0"
  int64_t created_unix_ns = 0;
  bool operator==(const Creator&) const = default;
};

void encode(ByteWriter& w, const ClockState& c);
ClockState decode_clock(ByteReader& r);
void encode(ByteWriter& w, const HostIdentity& h);
HostIdentity decode_host_identity(ByteReader& r);
void encode(ByteWriter& w, const std::vector<PortForward>& fwds);
std::vector<PortForward> decode_port_forwards(ByteReader& r);
void encode(ByteWriter& w, const Creator& c);
Creator decode_creator(ByteReader& r);

}  // namespace snapvm::state
