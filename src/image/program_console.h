// The guest console of a VM that runs an image's program (snapvm run
// --image, snapvm bake): the program writes its output there, the guest
// init writes its own lines and finally "SNAPVM-APP-EXIT code=N" (or
// signal=N) when the program ends.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/thread_annotations.h"

namespace snapvm::image {

// Passes the program's output on to `out` line by line, drops the guest
// init's own lines, and keeps the program's end as a shell status (the
// code, or 128 + the signal). The sink may be called from any thread.
class ImageConsole {
 public:
  explicit ImageConsole(std::function<void(std::string_view)> out) : out_(std::move(out)) {}
  std::function<void(std::string_view)> sink();
  std::optional<int> exit_status() const;

 private:
  void feed(std::string_view chunk);
  std::function<void(std::string_view)> out_;
  mutable Mutex mu_;
  std::string partial_ GUARDED_BY(mu_);
  std::optional<int> exit_status_ GUARDED_BY(mu_);
};

}  // namespace snapvm::image
