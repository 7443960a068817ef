// Result<T>: the return type of every fallible function in snapvm.
//
// tl::expected rather than std::expected because the fuzz build uses clang-14,
// whose libstdc++ mode has no <expected>.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <tl/expected.hpp>

namespace snapvm {

enum class ErrorCode {
  kInvalidArgument,     // the caller asked for something malformed
  kNotFound,            // a file, section or region is absent
  kDataLoss,            // a snapshot is corrupt, truncated or lies about itself
  kFailedPrecondition,  // the request is valid but the state is wrong for it
  kUnsupported,         // a valid request this build or host cannot serve
  kIo,                  // the operating system refused
};

std::string_view to_string(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message, int sys_errno = 0)
      : code_(code), message_(std::move(message)), errno_(sys_errno) {}

  ErrorCode code() const { return code_; }
  int sys_errno() const { return errno_; }
  const std::string& message() const { return message_; }

  // Prepends context, so an error bubbling up reads outermost-first:
  // "write /x/snap: pwrite RAM at 0x10000: No space left on device".
  Error&& context(std::string_view what) && {
    message_ = fmt::format("{}: {}", what, message_);
    return std::move(*this);
  }

  // One line for a user: the message, plus strerror when an errno is known.
  std::string describe() const;

 private:
  ErrorCode code_;
  std::string message_;
  int errno_;
};

template <typename T>
using Result = tl::expected<T, Error>;
using Status = Result<void>;

inline tl::unexpected<Error> make_error(ErrorCode code, std::string message) {
  return tl::unexpected<Error>(Error(code, std::move(message)));
}

template <typename... Args>
tl::unexpected<Error> make_error(ErrorCode code, fmt::format_string<Args...> f,
                                 Args&&... args) {
  return make_error(code, fmt::format(f, std::forward<Args>(args)...));
}

// An I/O error carrying the current errno.
tl::unexpected<Error> errno_error(std::string what);
tl::unexpected<Error> errno_error(std::string what, int err);

}  // namespace snapvm

// Propagates the error of a Result-returning expression, or yields its value.
// A statement expression (GCC and clang) keeps call sites flat.
#define SNAPVM_TRY(expr)                                              \
  ({                                                                  \
    auto _snapvm_r = (expr);                                          \
    if (!_snapvm_r) return tl::unexpected(std::move(_snapvm_r.error())); \
    std::move(_snapvm_r).value();                                     \
  })

#define SNAPVM_CHECK_OK(expr)                                          \
  do {                                                                 \
    auto _snapvm_s = (expr);                                           \
    if (!_snapvm_s) return tl::unexpected(std::move(_snapvm_s.error())); \
  } while (0)
