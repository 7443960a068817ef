#!/usr/bin/env bash
# Builds the Debian package of snapvm, build/package/snapvm_VERSION_ARCH.deb:
# the release tree (build/, configured for /usr) with snapvm, the guest
# init, the man pages and bash completion generated from --help, the pool's
# systemd unit, and a static snapvm that `snapvm jail` runs (the jail holds
# no shared libraries; the release binary is dynamic). Depends: computed by
# dpkg-shlibdeps. Install it with `apt install ./build/package/snapvm_*.deb`.
#
#   SNAPVM_PACKAGE_STATIC=yes   build the static snapvm (tools/build.sh static snapvm) and ship it (default)
#                        auto   ship it only if the static tree (build-ARCH-static/) exists, brought up to date
#                               (the test command's: CI's x86_64 test host builds that tree already)
#                        no     ship none: `snapvm jail` then says in one line how to get one
set -euo pipefail
cd "$(dirname "$0")/.."
static=${SNAPVM_PACKAGE_STATIC:-yes}
static_tree=build-$(uname -m)-static
case "$static" in
  yes) ;;
  auto) [ -d "$static_tree" ] || static=no ;;
  no) ;;
  *) echo "package.sh: SNAPVM_PACKAGE_STATIC must be yes, auto or no (not '$static')" >&2; exit 2 ;;
esac
static_vmm=
if [ "$static" != no ]; then
  tools/build.sh static snapvm >/dev/null
  static_vmm=$PWD/$static_tree/bin/snapvm
fi
cmake -S . -B build -G Ninja -DCMAKE_INSTALL_PREFIX=/usr "-DSNAPVM_PACKAGE_STATIC_VMM=$static_vmm" >/dev/null
tools/build.sh release snapvm snapvm-guest-init snapvm_docs >/dev/null
rm -rf build/package
(cd build && cpack -G DEB -B "$PWD/package" >/dev/null)
rm -rf build/package/_CPack_Packages
deb=$(ls build/package/snapvm_*.deb)
echo "package.sh: $deb ($(du -h "$deb" | cut -f1); $([ -n "$static_vmm" ] && echo "with" || echo "without") the static snapvm for jail)"
