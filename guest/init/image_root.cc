#include "image_root.h"

#include <sys/mount.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "agent/protocol.h"

namespace snapvm::guest {
namespace {

std::string failed(const std::string& what) {
  return "snapvm-init: image root: " + what + ": " + std::strerror(errno);
}

}  // namespace

std::string mount_image_root(const std::string& cmdline) {
  const std::string key = "snapvm.image=";
  auto at = cmdline.find(key);
  if (at == std::string::npos) return "";
  std::string dev = cmdline.substr(at + key.size(), cmdline.find_first_of(" \n", at) - at - key.size());
  if (dev.empty() || dev.find('/') != std::string::npos || dev.find("..") != std::string::npos) {
    return "snapvm-init: image root: snapvm.image= wants a disk name such as vda";
  }
  const std::string root = agent::kImageRoot;
  for (const char* d : {"/image", "/image/lower", "/image/rw", "/image/root"}) ::mkdir(d, 0755);
  if (::mount(("/dev/" + dev).c_str(), "/image/lower", "ext4", MS_RDONLY | MS_NODEV, "noload") != 0) {
    return failed("mount /dev/" + dev + " (ext4, read-only)");
  }
  // The writable layer lives in guest RAM: snapshots carry it, clones
  // share it copy-on-write, the image on the host is never written.
  if (::mount("tmpfs", "/image/rw", "tmpfs", MS_NODEV, "mode=0755") != 0) return failed("tmpfs for the upper layer");
  ::mkdir("/image/rw/upper", 0755);
  ::mkdir("/image/rw/work", 0755);
  if (::mount("overlay", root.c_str(), "overlay", MS_NODEV,
              "lowerdir=/image/lower,upperdir=/image/rw/upper,workdir=/image/rw/work") != 0) {
    return failed("overlay");
  }
  struct Mount {
    const char* source;
    const char* target;
    const char* type;
    unsigned long flags;
    const char* options;
  };
  const Mount inside[] = {
      {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
      {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, nullptr},
      {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, nullptr},
      {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666"},
      {"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
  };
  for (const auto& m : inside) {
    const std::string target = root + m.target;
    ::mkdir(target.c_str(), 0755);
    if (::mount(m.source, target.c_str(), m.type, m.flags, m.options) != 0) return failed(std::string("mount ") + m.target);
  }
  return "snapvm-init: image root from /dev/" + dev + " at " + root + " (overlay, writes in RAM)";
}

}  // namespace snapvm::guest
