// libFuzzer target: a control-socket client's request line. Parsing must
// never throw, crash or accept a request with a field of the wrong type.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "control/control_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = snapvm::parse_control_request({reinterpret_cast<const char*>(data), size});
  if (r && r->op == snapvm::ControlRequest::Op::kSnapshot && (r->path.empty() || r->path.size() > snapvm::kMaxControlPathBytes)) {
    __builtin_trap();  // a snapshot request always names a bounded path
  }
  return 0;
}
