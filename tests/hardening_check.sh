#!/usr/bin/env bash
# Reads a binary's own headers and symbols for the hardening the build asks
# for; fails naming each one missing.
#   tests/hardening_check.sh BINARY
set -euo pipefail
bin=$1
missing=()
headers=$(readelf -W -h -l -d "$bin")
symbols=$(readelf -W --dyn-syms "$bin")
grep -q 'Type: *DYN' <<<"$headers" || missing+=("PIE (ELF type is not DYN)")
grep -q 'GNU_RELRO' <<<"$headers" || missing+=("RELRO (no GNU_RELRO segment)")
grep -Eq 'BIND_NOW|FLAGS.*NOW' <<<"$headers" || missing+=("full RELRO (no BIND_NOW)")
grep -q '__stack_chk_fail' <<<"$symbols" || missing+=("stack protector (no __stack_chk_fail)")
grep -Eq '__(memcpy|memmove|memset|read|snprintf|vsnprintf|strncpy|fprintf)_chk' <<<"$symbols" ||
  missing+=("_FORTIFY_SOURCE (no __*_chk call)")
if ((${#missing[@]})); then
  for what in "${missing[@]}"; do echo "hardening_check: $bin lacks $what" >&2; done
  exit 1
fi
echo "hardening_check: $bin is PIE with full RELRO, a stack protector and fortified calls"
