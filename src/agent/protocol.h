// The guest agent's wire protocol (docs/agent-protocol.md). One request per
// connection; every message is a frame:
//
//   u32 length (LE, of type + payload)  u8 type  payload
//
// Requests carry a JSON object; streams carry raw bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace snapvm::agent {

inline constexpr uint32_t kAgentPort = 1024;       // the agent's vsock port
inline constexpr uint32_t kMaxFrameBytes = 1 << 20;  // payload limit either way
// A started program's TCP port P is reachable from the host as guest vsock
// port kTcpRelayBase + P (the guest relays it to 127.0.0.1:P): above every
// 16-bit port, so it never meets the agent's or a user's vsock port.
inline constexpr uint32_t kTcpRelayBase = 0x10000;
// Where kStart requests with "root" mount an image (guest init, snapvm.image=).
inline constexpr const char* kImageRoot = "/image/root";

enum class Frame : uint8_t {
  // host -> guest
  kExec = 1,       // JSON: argv, env, cwd, timeout_ms
  kStdin = 2,      // bytes for the command's stdin
  kStdinEof = 3,   // closes the command's stdin
  kPut = 4,        // JSON: path, mode; followed by kData frames and kDataEnd
  kGet = 5,        // JSON: path
  kData = 6,       // file bytes, either way
  kDataEnd = 7,    // end of a file, either way
  kSync = 8,       // JSON: realtime_ns, entropy (hex): after a restore
  kStart = 9,      // JSON: argv, env, cwd, user, root, tcp_ports, poweroff_on_exit: a
                   // long-running program (an image's entrypoint), not tied to the connection
  // guest -> host
  kStdout = 10,
  kStderr = 11,
  kExit = 12,      // JSON: code, or signal (and timed_out)
  kError = 13,     // JSON: message (the request failed; nothing ran)
  kOk = 14,        // JSON: request-specific result (put: bytes)
};

void append_frame(std::vector<uint8_t>& out, Frame type, std::span<const uint8_t> payload);
void append_frame(std::vector<uint8_t>& out, Frame type, const std::string& payload);

// Incremental decoder over a byte stream.
class FrameReader {
 public:
  struct Message {
    Frame type;
    std::vector<uint8_t> payload;
    std::string text() const { return std::string(payload.begin(), payload.end()); }
  };
  void feed(std::span<const uint8_t> bytes) { buf_.insert(buf_.end(), bytes.begin(), bytes.end()); }
  // The next complete frame, or nullopt. Sets error() on a frame over the limit.
  std::optional<Message> next();
  bool error() const { return error_; }

 private:
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
  bool error_ = false;
};

}  // namespace snapvm::agent
