// A client of QEMU's machine protocol (QMP, JSON lines on a Unix socket),
// enough for a benchmark to pause QEMU, save it with `migrate` and see it
// running again. Asynchronous events are skipped.
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace snapvm::bench {

class QmpClient {
 public:
  // Connects (retrying until `limit`: QEMU creates the socket as it starts)
  // and negotiates capabilities.
  static Result<QmpClient> connect(const std::string& path, std::chrono::milliseconds limit);
  QmpClient(QmpClient&&) noexcept;
  QmpClient& operator=(QmpClient&&) noexcept;
  ~QmpClient();

  // Runs `command` with `arguments`; its "return" value, or QEMU's error.
  Result<nlohmann::json> execute(const std::string& command, const nlohmann::json& arguments = nullptr);

 private:
  explicit QmpClient(int fd) : fd_(fd) {}
  Result<nlohmann::json> read_message();
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace snapvm::bench
