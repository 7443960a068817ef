#!/usr/bin/env bash
# Firecracker's getting-started calls, made with curl --unix-socket as its
# documentation makes them, against `snapvm firecracker`; each status code
# and fault checked. No VM starts, so this runs on any host (the KVM suite
# boots, pauses and snapshots VMs through the same API).
#
#   tests/firecracker/curl_test.sh SNAPVM_BINARY WORKDIR
set -euo pipefail
bin=$1 work=$2
mkdir -p "$work"
sock=$work/curl.sock
rm -f "$sock"
"$bin" firecracker --api-sock "$sock" --id curl-test >/dev/null 2>"$work/curl-vmm.err" &
vmm=$!
trap 'kill $vmm 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done

failures=0 calls=0
# expect STATUS METHOD PATH [BODY]: the status, and a fault message with every 400.
expect() {
  local want=$1 method=$2 path=$3 body=${4:-}
  local args=(-s -o "$work/curl.out" -w '%{http_code}' --unix-socket "$sock" -X "$method" "http://localhost$path"
              -H 'Accept: application/json' -H 'Content-Type: application/json')
  [ -n "$body" ] && args+=(-d "$body")
  local got
  got=$(curl "${args[@]}")
  calls=$((calls + 1))
  if [ "$got" != "$want" ] || { [ "$want" = 400 ] && ! grep -q '"fault_message"' "$work/curl.out"; }; then
    echo "FAIL: $method $path: HTTP $got (want $want): $(cat "$work/curl.out")"
    failures=$((failures + 1))
  fi
}

expect 200 GET /
grep -q '"state":"Not started"' "$work/curl.out" || { echo "FAIL: GET / state"; failures=$((failures + 1)); }
expect 204 PUT /logger "{\"log_path\": \"$work/curl.log\", \"level\": \"Debug\", \"show_level\": true, \"show_log_origin\": true}"
expect 204 PUT /boot-source '{"kernel_image_path": "./hello-vmlinux.bin", "boot_args": "console=ttyS0 reboot=k panic=1 pci=off"}'
expect 204 PUT /drives/rootfs '{"drive_id": "rootfs", "path_on_host": "./hello-rootfs.ext4", "is_root_device": true, "is_read_only": false}'
expect 204 PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 1024}'
expect 204 PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$work/curl.vsock\"}"
expect 200 GET /vm/config
grep -q '"path_on_host":"./hello-rootfs.ext4"' "$work/curl.out" || { echo "FAIL: vm/config drives"; failures=$((failures + 1)); }
expect 200 GET /machine-config
grep -q '"mem_size_mib":1024' "$work/curl.out" || { echo "FAIL: machine-config"; failures=$((failures + 1)); }
expect 400 PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 1024, "cpu_template": "C3"}'
expect 204 PUT /network-interfaces/eth0 '{"iface_id": "eth0", "guest_mac": "AA:FC:00:00:00:01", "host_dev_name": "tap0"}'
expect 400 PUT /network-interfaces/eth1 '{"iface_id": "eth1", "guest_mac": "AA:FC:00:00:00", "host_dev_name": "tap1"}'
expect 400 PATCH /vm '{"state": "Paused"}'
expect 400 PUT /actions '{"action_type": "SendCtrlAltDel"}'
expect 400 PUT /drives/rootfs '{"drive_id": "rootfs"'
expect 400 GET /mmds
kill -0 $vmm || { echo "FAIL: the VMM died"; failures=$((failures + 1)); }
if [ "$failures" -ne 0 ]; then
  echo "curl_test: $failures of $calls calls failed"
  exit 1
fi
echo "curl_test: Firecracker's getting-started calls with curl --unix-socket: $calls answered as expected"
