#!/usr/bin/env bash
# The Debian package on this machine: builds it (tools/package.sh), installs
# it with dpkg, checks what it installed works (snapvm, the firecracker
# link, the man pages, the bash completion, the pool's unit, the guest
# init, the static snapvm jail runs), purges it and checks that every file
# it installed is gone.
#
# Safe on a CI machine run as root: refuses to touch a snapvm that is
# already installed (a package, or files where the package's would go), is
# serialized with any other run on the machine (flock), and purges the
# package on every way out, failures and interrupts included.
#
#   SNAPVM_PACKAGE_STATIC=auto (default here; see tools/package.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "package test: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg -i)"

lock=/run/lock/snapvm-package-test.lock
[ -d /run/lock ] || lock=/tmp/snapvm-package-test.lock
exec 9>"$lock"
flock -w 900 9 || fail "another package test held $lock for 15 minutes"

installed() { dpkg-query -W -f='${Status}' snapvm 2>/dev/null | grep -q 'ok installed'; }
installed && fail "a snapvm package is installed on this machine already; this test does not replace it"

SNAPVM_PACKAGE_STATIC=${SNAPVM_PACKAGE_STATIC:-auto} tools/package.sh
deb=$(ls build/package/snapvm_*.deb)
version=$(dpkg-deb -f "$deb" Version)
mapfile -t paths < <(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|; s|/$||' | grep -v '^$')
# Files already there would be overwritten, then removed by the purge.
for p in "${paths[@]}"; do
  if [ ! -d "$p" ] && { [ -e "$p" ] || [ -L "$p" ]; }; then
    fail "$p exists already (not from a snapvm package); not installing over it"
  fi
done

tmp=$(mktemp -d)
ours=0
cleanup() {
  rc=$?
  if [ "$ours" = 1 ] && installed; then
    echo "package test: purging the snapvm package it installed" >&2
    dpkg --purge snapvm >/dev/null 2>&1 || echo "package test: dpkg --purge snapvm failed: remove it by hand" >&2
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ours=1
dpkg -i "$deb" >/dev/null
echo "package test: $deb installed (Depends: $(dpkg-query -W -f='${Depends}' snapvm))"
dpkg-query -W -f='${Depends}' snapvm | grep -q 'libc6' || fail "no Depends computed (dpkg-shlibdeps)"

# The binary, and the link that gives Firecracker's command line.
[ "$(snapvm --version)" = "snapvm $version" ] || fail "snapvm --version says '$(snapvm --version)', the package $version"
[ "$(command -v snapvm)" = /usr/bin/snapvm ] || fail "snapvm on PATH is $(command -v snapvm), not /usr/bin/snapvm"
fc=$(/usr/lib/snapvm/bin/firecracker --version)
[[ "$fc" == "Firecracker v"*" (snapvm $version)" ]] || fail "/usr/lib/snapvm/bin/firecracker --version says '$fc'"

# Man pages: one for snapvm and one per command, found by man.
for cmd in "" $(snapvm --help | sed -n '/^Subcommands:/,/^$/p' | awk 'NR > 1 && NF {print $1}'); do
  page=/usr/share/man/man1/snapvm${cmd:+-$cmd}.1.gz
  [ -f "$page" ] || fail "no man page $page for '${cmd:-snapvm}'"
done
if command -v man >/dev/null; then
  [ "$(man -w snapvm)" = /usr/share/man/man1/snapvm.1.gz ] || fail "man -w snapvm says '$(man -w snapvm)'"
  MANWIDTH=100 man snapvm-pool 2>/dev/null | grep -q -- '--take-wait' || fail "man snapvm-pool shows no --take-wait"
fi

# Bash completion: commands, a nested command, a command's flags, a flag's values.
completes() {  # WORDS... -> what completing the last word offers
  bash -c 'source /usr/share/bash-completion/completions/snapvm
           COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _snapvm; echo "${COMPREPLY[*]}"' bash "$@"
}
[ "$(completes snapvm po)" = pool ] || fail "completing 'snapvm po' gives '$(completes snapvm po)'"
[ "$(completes snapvm pool s)" = "serve status stop" ] || fail "completing 'snapvm pool s' gives '$(completes snapvm pool s)'"
[ "$(completes snapvm pool serve --take)" = --take-wait ] || fail "no --take-wait for 'snapvm pool serve --take'"
[ "$(completes snapvm run --seccomp e)" = enforce ] || fail "no 'enforce' for 'snapvm run --seccomp e'"

# The pool's unit: installed, for /usr/bin/snapvm, and valid to systemd where systemd is.
unit=/usr/lib/systemd/system/snapvm-pool@.service
[ -f "$unit" ] || fail "no $unit"
grep -q '^ExecStart=/usr/bin/snapvm pool serve ' "$unit" || fail "$unit does not start /usr/bin/snapvm pool serve"
grep -q '^Type=notify$' "$unit" || fail "$unit is not Type=notify"
if command -v systemd-analyze >/dev/null; then
  # An instance of the template, with its configuration file, checked offline.
  mkdir -p "$tmp/units" "$tmp/etc"
  sed "s|/etc/snapvm/|$tmp/etc/|g" "$unit" > "$tmp/units/snapvm-pool@ci.service"
  cp /usr/share/doc/snapvm/examples/pool.conf.example "$tmp/etc/pool-ci.conf"
  SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$tmp/units/snapvm-pool@ci.service" > "$tmp/verify.log" 2>&1 ||
    { cat "$tmp/verify.log" >&2; fail "systemd-analyze verify failed on $unit"; }
  grep -i 'snapvm-pool' "$tmp/verify.log" >&2 && fail "systemd-analyze verify has something to say about $unit"
  echo "package test: systemd-analyze verify: $unit (an instance) is valid"
else
  echo "package test: no systemd-analyze here: $unit not verified"
fi

# What guests are built from: the static guest init (and the guest scripts, once they exist).
init=/usr/lib/snapvm/snapvm-guest-init
[ -x "$init" ] || fail "no executable $init"
readelf -l "$init" | grep -q 'Requesting program interpreter' && fail "$init is not static"
# The installed snapvm finds its guest scripts and init beside it: the
# script's own first check (a folder nobody may write) answers.
for f in build-guest.sh pack-guest.sh; do [ -x "/usr/lib/snapvm/$f" ] || fail "no executable /usr/lib/snapvm/$f"; done
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups snapvm guest build --dir /root/snapvm-guest 2>&1) &&
  fail "snapvm guest build into /root as nobody succeeded"
[[ "$out" == *"cannot write in /root"* ]] || fail "the installed snapvm guest build says: $out"

# `snapvm jail` needs a static snapvm: the package's, or one line saying how to get one.
if [ -e /usr/lib/snapvm/snapvm-static ]; then
  readelf -l /usr/lib/snapvm/snapvm-static | grep -q 'Requesting program interpreter' &&
    fail "/usr/lib/snapvm/snapvm-static is not static"
  [ "$(/usr/lib/snapvm/snapvm-static --version)" = "snapvm $version" ] || fail "snapvm-static is another version"
  # A jail that runs `snapvm run --help` inside (no guest: no /dev/kvm needed).
  set +e
  out=$(snapvm jail --id pkgtest --uid 65534 --gid 65534 --root "$tmp/jails" -- run --help 2>&1)
  set -e
  if [[ "$out" == *"Usage: snapvm run"* ]]; then
    echo "package test: snapvm jail ran /usr/lib/snapvm/snapvm-static in a jail"
  elif [[ "$out" == *"unshare"* || "$out" == *"not permitted"* ]]; then
    echo "package test: this machine allows no jail (${out}); /usr/lib/snapvm/snapvm-static checked as a file"
  else
    fail "snapvm jail -- run --help with the package's static snapvm says: $out"
  fi
else
  set +e
  out=$(snapvm jail --id pkgtest --uid 65534 --gid 65534 --root "$tmp/jails" -- run --help 2>&1)
  set -e
  [[ "$out" == *"/usr/lib/snapvm/snapvm-static does not exist: build a static one (tools/build.sh static)"* ]] ||
    fail "snapvm jail without a static snapvm says: $out"
  echo "package test: without a static snapvm, jail says: $out"
fi

# Removal: every file the package installed is gone.
mapfile -t listed < <(dpkg -L snapvm)
dpkg --purge snapvm >/dev/null
installed && fail "snapvm is still installed after dpkg --purge"
left=()
for p in "${listed[@]}"; do
  case "$p" in /usr/lib/snapvm* | /usr/share/doc/snapvm* | *snapvm*) ;; *) continue ;; esac
  if [ -e "$p" ] || [ -L "$p" ]; then left+=("$p"); fi
done
((${#left[@]} == 0)) || fail "left behind after dpkg --purge: ${left[*]}"
echo "package test: ok (snapvm $version installed, checked and purged; ${#listed[@]} paths gone)"
