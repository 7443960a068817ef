#!/usr/bin/env bash
# Makes Debian's bookworm-backports suite available to apt (QEMU 10 and
# Linux 6.12 built for Debian 12, which the test hosts run). The mirror is
# this machine's own: the URIs of its Debian source are copied into a
# second source, so no mirror is named here. Idempotent; apt's default
# priority for backports stays low, so nothing else is upgraded by it.
#
#   tools/testhost/backports.sh
set -euo pipefail
target=/etc/apt/sources.list.d/snapvm-bookworm-backports.sources
if apt-cache policy 2>/dev/null | grep -q 'a=bookworm-backports\|n=bookworm-backports'; then
  exit 0
fi
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ "$codename" = bookworm ] || { echo "backports: this machine runs Debian '${codename:-?}', not bookworm (12)" >&2; exit 2; }

# The URIs and keyring of the source that carries the main bookworm suite:
# deb822 (.sources) first, then one-line sources.list entries.
uris="" signed_by=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] || continue
  [ "$f" = "$target" ] && continue
  read -r uris signed_by < <(awk '
    function flush() { if (suites ~ /(^| )bookworm( |$)/ && uris != "") { print uris, signed; found = 1; exit } uris = ""; suites = ""; signed = "" }
    /^[[:space:]]*$/ { flush(); next }
    /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
    /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
    /^Signed-By:/ { sub(/^Signed-By:[[:space:]]*/, ""); signed = $0 }
    END { if (!found) flush() }' "$f") || true
  [ -n "$uris" ] && break
done
if [ -z "$uris" ] && [ -e /etc/apt/sources.list ]; then
  uris=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $(i + 1) == "bookworm") { print $i; exit } }' \
    /etc/apt/sources.list)
fi
[ -n "$uris" ] || { echo "backports: no Debian bookworm source found in /etc/apt to take a mirror from" >&2; exit 1; }
{
  echo "Types: deb"
  echo "URIs: $uris"
  echo "Suites: bookworm-backports"
  echo "Components: main"
  echo "Signed-By: ${signed_by:-/usr/share/keyrings/debian-archive-keyring.gpg}"
} | "${sudo_cmd[@]}" tee "$target" >/dev/null
echo "backports: added bookworm-backports from $uris ($target)"
"${sudo_cmd[@]}" apt-get update -qq
