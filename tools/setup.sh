#!/usr/bin/env bash
# Installs everything snapvm needs to build and test on a Debian 12 machine.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libexpected-dev libfmt-dev libxxhash-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev
  libseccomp-dev                  # seccomp filters per VMM thread
  libboost-dev                    # Boost.Beast: the Firecracker API's HTTP server
  clang-14 libclang-rt-14-dev     # libFuzzer and sanitizer runtimes
  xfsprogs util-linux             # reflink-capable loop filesystem for diff tests
  curl python3                    # real HTTP clients of the Firecracker API tests
  libarchive-dev e2fsprogs        # container image layers (tar, gzip, zstd) and root filesystems
  libssl-dev                      # sha256 of image blobs
  umoci                           # OCI images built by the image tests
  cpio xz-utils                   # snapvm guest build packs the guest initramfs
  dpkg-dev                        # dpkg-shlibdeps: the Debian package's Depends (tools/package.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: dependencies present"
