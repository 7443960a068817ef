// The control socket's requests (docs/control-api.md), parsed from a line a
// client wrote. Clients are untrusted: any line, however malformed, becomes
// either a request or a one-line error; nothing here throws.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "base/result.h"

namespace snapvm {

// Longest request line the server reads before answering "too long".
inline constexpr size_t kMaxControlRequestBytes = 64 * 1024;
// Longest path a request may name (PATH_MAX).
inline constexpr size_t kMaxControlPathBytes = 4096;

struct ControlRequest {
  // kShutdown presses the power button (the guest shuts down cleanly if it
  // listens); kEvents keeps the connection as a stream of events.
  enum class Op { kInfo, kPause, kResume, kSnapshot, kShutdown, kEvents };
  Op op = Op::kInfo;
  // kSnapshot only:
  std::string path;       // where the snapshot goes
  std::string diff_from;  // empty: a full snapshot
  bool resume = false;    // resume the guest once written
};

Result<ControlRequest> parse_control_request(std::string_view line);

}  // namespace snapvm
