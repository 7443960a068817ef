#include "image/digest.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include <fmt/format.h>

#include "image/interrupt.h"

namespace snapvm::image {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }

Sha256::~Sha256() = default;

void Sha256::update(const void* data, size_t size) { EVP_DigestUpdate(ctx_.get(), data, size); }

std::string Sha256::finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_.get(), md, &len);
  std::string out = "sha256:";
  for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", md[i]);
  return out;
}

Result<std::string> sha256_of_fd(int fd, const std::string& name) {
  Sha256 hash;
  std::vector<char> buf(1 << 20);
  for (off_t at = 0;;) {
    SNAPVM_CHECK_OK(check_interrupt());
    const ssize_t n = ::pread(fd, buf.data(), buf.size(), at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read " + name);
    if (n == 0) break;
    hash.update(buf.data(), static_cast<size_t>(n));
    at += n;
  }
  return hash.finish();
}

}  // namespace snapvm::image
