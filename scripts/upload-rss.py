#!/usr/bin/env python3
"""Memory under big bodies: RSS of a real `wagate serve` before, during and after N
concurrent 16 MB uploads (POST /v1/developer/media/upload).

    scripts/upload-rss.py target/release/wagate                 # default budget
    scripts/upload-rss.py target/release/wagate --budget-mib 1024 --clients 32

Prints one line per phase and the replies' statuses. Standard library only.
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

MB16 = 16 * 1024 * 1024


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def upload(port, key, body, boundary, results, i):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request(
            "POST",
            "/v1/developer/media/upload",
            body=body,
            headers={
                "X-API-Key": key,
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        r = c.getresponse()
        r.read()
        results[i] = r.status
    except Exception as e:  # a refused upload may reset the socket mid-body
        results[i] = type(e).__name__


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("wagate")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--budget-mib", type=int, default=None)
    ap.add_argument("--settle", type=float, default=5.0)
    a = ap.parse_args()

    data = tempfile.mkdtemp(prefix="wagate-rss-")
    env = dict(os.environ, WAGATE_DATA_DIR=data, RUST_LOG="warn")
    if a.budget_mib:
        env["WAGATE_HTTP__MAX_BODY_BYTES_IN_FLIGHT"] = str(a.budget_mib * 1024 * 1024)
    out = subprocess.run(
        [a.wagate, "account", "create", "--name", "rss"], env=env, check=True,
        capture_output=True, text=True,
    ).stdout
    key = json.loads(out[out.index("{"):])["apiKey"]
    port = free_port()
    env["WAGATE_LISTEN"] = f"127.0.0.1:{port}"
    server = subprocess.Popen([a.wagate, "serve"], env=env)
    try:
        for _ in range(200):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        boundary = "rssboundary"
        file = os.urandom(MB16 - 1024)
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + file + f"\r\n--{boundary}--\r\n".encode()
        time.sleep(1)
        before = rss_mib(server.pid)
        results = [None] * a.clients
        threads = [
            threading.Thread(target=upload, args=(port, key, body, boundary, results, i))
            for i in range(a.clients)
        ]
        peak = before
        started = time.time()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_mib(server.pid))
            time.sleep(0.02)
        took = time.time() - started
        done = rss_mib(server.pid)
        time.sleep(a.settle)
        after = rss_mib(server.pid)
        counts = {}
        for r in results:
            counts[r] = counts.get(r, 0) + 1
        print(f"clients={a.clients} budget_mib={a.budget_mib or 'default'} took={took:.1f}s")
        print(f"rss_mib before={before:.0f} peak={peak:.0f} at_end={done:.0f} after_{a.settle:.0f}s={after:.0f}")
        print(f"statuses={counts}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
