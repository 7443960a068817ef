#include "fill_memory.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace snapvm::guest {

bool fill_memory(const std::string& path, uint64_t mib) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  std::vector<uint64_t> chunk((1u << 20) / sizeof(uint64_t));
  uint64_t x = 0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(::getpid());
  for (uint64_t m = 0; m < mib; ++m) {
    for (auto& word : chunk) {
      x ^= x >> 12;
      x ^= x << 25;
      x ^= x >> 27;
      word = x * 0x2545f4914f6cdd1dull;
    }
    const char* p = reinterpret_cast<const char*>(chunk.data());
    size_t left = chunk.size() * sizeof(uint64_t);
    while (left > 0) {
      ssize_t n = ::write(fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int saved = errno;
        ::close(fd);
        errno = saved;
        return false;
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  return ::close(fd) == 0;
}

int fill_memory_main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: fill-memory FILE MIB\n");
    return 2;
  }
  char* end = nullptr;
  unsigned long long mib = std::strtoull(argv[2], &end, 10);
  if (end == argv[2] || *end != '\0' || mib > (1ull << 20)) {
    std::fprintf(stderr, "fill-memory: MIB must be a number of MiB, not '%s'\n", argv[2]);
    return 2;
  }
  if (!fill_memory(argv[1], mib)) {
    std::fprintf(stderr, "fill-memory: %s: %s\n", argv[1], std::strerror(errno));
    return 1;
  }
  return 0;
}

}  // namespace snapvm::guest
