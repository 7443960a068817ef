// SHA-256 as images name content: "sha256:<64 lowercase hex>".
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "base/result.h"

struct evp_md_ctx_st;

namespace snapvm::image {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t size);
  std::string finish();  // "sha256:<hex>"

 private:
  std::unique_ptr<evp_md_ctx_st, void (*)(evp_md_ctx_st*)> ctx_;
};

// The digest of what `fd` holds from its start (read with pread, so the
// file offset is left alone). `name` is for messages.
Result<std::string> sha256_of_fd(int fd, const std::string& name);

}  // namespace snapvm::image
