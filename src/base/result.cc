#include "base/result.h"

#include <cerrno>
#include <cstring>

namespace snapvm {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kDataLoss: return "corrupt snapshot";
    case ErrorCode::kFailedPrecondition: return "failed precondition";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kIo: return "I/O error";
  }
  return "error";
}

std::string Error::describe() const {
  if (errno_ != 0) return fmt::format("{}: {}", message_, std::strerror(errno_));
  return message_;
}

tl::unexpected<Error> errno_error(std::string what) { return errno_error(std::move(what), errno); }

tl::unexpected<Error> errno_error(std::string what, int err) {
  ErrorCode code = err == ENOENT ? ErrorCode::kNotFound
                   : (err == EOPNOTSUPP || err == ENOTTY || err == ENOSYS) ? ErrorCode::kUnsupported
                                                                            : ErrorCode::kIo;
  return tl::unexpected<Error>(Error(code, std::move(what), err));
}

}  // namespace snapvm
