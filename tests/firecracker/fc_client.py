#!/usr/bin/env python3
"""Drives `snapvm firecracker` with Python's own HTTP client over the Unix
socket, the way SDK-based tools do: the configuration calls of Firecracker's
getting-started guide and of firecracker-go-sdk, each answer checked, then
malformed requests, each a 400 with a fault message. No VM is started, so
this runs on any host.

    fc_client.py SNAPVM_BINARY WORKDIR
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import time


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def call(sock, method, path, body=None, raw=None):
    conn = UnixConnection(sock)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    return resp.status, (json.loads(text) if text else None)


failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def main():
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    sock = os.path.join(work, "py.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    vmm = subprocess.Popen([binary, "firecracker", "--api-sock", sock, "--id", "py-client"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        if os.path.exists(sock):
            break
        time.sleep(0.05)
    try:
        status, info = call(sock, "GET", "/")
        expect(status == 200 and info["id"] == "py-client" and info["state"] == "Not started", f"GET / -> {status} {info}")
        status, version = call(sock, "GET", "/version")
        expect(status == 200 and "firecracker_version" in version, f"GET /version -> {status} {version}")

        # firecracker-go-sdk's order: machine config, boot source, drives, vsock, then the start.
        ok = [
            ("PUT", "/logger", {"log_path": os.path.join(work, "py.log"), "level": "Debug", "show_level": True}),
            ("PUT", "/metrics", {"metrics_path": os.path.join(work, "py.metrics")}),
            ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 512, "smt": False, "track_dirty_pages": True}),
            ("PATCH", "/machine-config", {"mem_size_mib": 1024}),
            ("PUT", "/boot-source", {"kernel_image_path": "/boot/vmlinux", "boot_args": "console=ttyS0 reboot=k panic=1"}),
            ("PUT", "/drives/rootfs", {"drive_id": "rootfs", "path_on_host": "/img/rootfs.ext4", "is_root_device": True,
                                       "is_read_only": False, "cache_type": "Unsafe", "io_engine": "Sync"}),
            ("PUT", "/drives/scratch", {"drive_id": "scratch", "path_on_host": "/img/scratch.ext4",
                                        "is_root_device": False, "is_read_only": True}),
            ("PUT", "/vsock", {"guest_cid": 3, "uds_path": os.path.join(work, "py.vsock")}),
            ("PUT", "/entropy", {}),
            ("PUT", "/actions", {"action_type": "FlushMetrics"}),
        ]
        for method, path, body in ok:
            status, reply = call(sock, method, path, body)
            expect(status == 204 and reply is None, f"{method} {path} -> {status} {reply}")

        status, config = call(sock, "GET", "/vm/config")
        expect(status == 200, f"GET /vm/config -> {status}")
        expect(config["machine-config"] == {"vcpu_count": 2, "mem_size_mib": 1024, "smt": False,
                                            "track_dirty_pages": True, "huge_pages": "None"},
               f"machine-config {config['machine-config']}")
        expect([d["drive_id"] for d in config["drives"]] == ["rootfs", "scratch"], f"drives {config['drives']}")
        expect(config["vsock"]["guest_cid"] == 3, f"vsock {config['vsock']}")
        with open(os.path.join(work, "py.metrics")) as f:
            line = json.loads(f.readline())
        expect(line["api_server"]["requests"] >= 10 and line["vmm"]["state"] == "Not started", f"metrics {line}")

        bad = [
            ("PUT", "/machine-config", {"vcpu_count": 2}),                       # missing field
            ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": "1G"}),  # wrong type
            ("PUT", "/machine-config", {"vcpu_count": 64, "mem_size_mib": 512}),  # out of range
            ("PUT", "/boot-source", {"kernel_image_path": "/k", "kernel_args": "x"}),  # unknown field
            ("PUT", "/drives/a", {"drive_id": "b", "path_on_host": "/x", "is_root_device": False}),  # id mismatch
            ("PUT", "/network-interfaces/eth0", {"iface_id": "eth1", "host_dev_name": "tap0"}),  # id mismatch
            ("PUT", "/balloon", {"amount_mib": 0, "deflate_on_oom": False}),
            ("PATCH", "/vm", {"state": "Paused"}),                               # not started
            ("PUT", "/snapshot/create", {"snapshot_path": "/s", "mem_file_path": "/m"}),
            ("PUT", "/snapshot/load", {"snapshot_path": "/s", "mem_file_path": "/m"}),  # configured already
            ("PUT", "/actions", {"action_type": "Reboot"}),
            ("GET", "/no/such/path", None),
        ]
        for method, path, body in bad:
            status, reply = call(sock, method, path, body)
            expect(status == 400 and reply and reply.get("fault_message"), f"{method} {path} -> {status} {reply}")
        status, reply = call(sock, "PUT", "/boot-source", raw="{\"kernel_image_path\": ")
        expect(status == 400 and reply.get("fault_message"), f"truncated JSON -> {status} {reply}")
        status, reply = call(sock, "PUT", "/boot-source", raw="x" * 60000)
        expect(status == 400 and "51200" in reply.get("fault_message", ""), f"huge body -> {status} {reply}")

        # A slow client is cut off; the API keeps answering others meanwhile.
        slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        slow.connect(sock)
        slow.sendall(b"PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        status, info = call(sock, "GET", "/")
        expect(status == 200 and info["state"] == "Not started", f"GET / beside a slow client -> {status}")
        slow.settimeout(15)
        start = time.time()
        try:
            leftover = slow.recv(4096)
        except socket.timeout:
            leftover = None
        expect(leftover is not None and time.time() - start < 12, "a slow client is not cut off within 12 s")
        slow.close()
        expect(vmm.poll() is None, "the VMM died")
    finally:
        vmm.terminate()
        vmm.wait()
    if failures:
        print(f"fc_client.py: {len(failures)} failure(s)")
        return 1
    print(f"fc_client.py: Firecracker API driven by Python's http.client: {len(ok) + len(bad) + 6} requests answered as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
