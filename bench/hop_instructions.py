#!/usr/bin/env python3
# Run: python3 bench/hop_instructions.py [--bin DIR] [--requests 200,1200]
"""Instructions a forwarding hop executes, exactly (callgrind), for what per-hop features cost.

`map` forwards to `movingAvg` (both release dyninka-host processes of the fixture table); only
`map` runs under valgrind --tool=callgrind. A client sends keep-alive-free POSTs one at a time,
first N1 then N2 requests in two separate runs; (Ir(N2) - Ir(N1)) / (N2 - N1) is what one request
costs `map`, with start-up and idle timers cancelled out. Variants, each against `plain`:

  plain        no trace context from the client, no app key
  traceparent  the client sends a sampled-off traceparent: map continues the trace
  appkey       map and movingAvg have an app key; the client signs its request to map as a hop of
               the app would (the same HMAC-SHA256 message as CSupport/CDyninkaCrypto), so map
               checks one signature and makes one: one signed hop. Not run by default: under
               valgrind, libcrypto sees no SHA extensions and takes its generic SHA-256 code (one
               function was 8,156 of the 18,171 extra instructions per request), so the count says
               more about valgrind than about the machine; bench/hop_bench.py's chain4k and perf
               measure that cost instead

Instructions do not depend on the machine's load, so this runs beside anything. Results go to
bench/results/DATE-HOST-hop-instructions.md. Needs valgrind (apt-get install valgrind).
"""
import argparse
import datetime
import hashlib
import hmac
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = bytes(range(32))
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def auth(service, route, expiry):
    """Dyninka-Auth for a request to `service` with `route` and no arguments or deadline."""
    def part(value):
        if value is None:
            return b"-:"
        data = value.encode()
        return b"+%d:" % len(data) + data
    message = b"dyninka-auth-v1 %d " % expiry + part(service) + part(route) + part(None) + part(None)
    return "v1 %d %s" % (expiry, hmac.new(KEY, message, hashlib.sha256).hexdigest())


def post(port, headers):
    head = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    body = '{"sensor":"a","variable":"Temperature","value":20}'
    request = (head + f"Content-Length: {len(body)}\r\n\r\n" + body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    if status != 200:
        raise SystemExit(f"map answered {status}: {data[-300:]!r}")


def wait_port(port, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port} after {seconds} s")


def instructions(bin_dir, variant, requests, tmp):
    """Total instructions of `map` serving `requests` requests of `variant`."""
    key_file = os.path.join(tmp, "app.key")
    with open(key_file, "w") as f:
        f.write(KEY.hex() + "\n")
    keyed = ["--app-key-file", key_file] if variant == "appkey" else []
    # valgrind cannot read the debug info of a Swift release build: stripped copies run instead.
    host, app = os.path.join(tmp, "dyninka-host"), os.path.join(tmp, "libDyninkaFixture.so")
    for name, copy in (("dyninka-host", host), ("libDyninkaFixture.so", app)):
        if not os.path.exists(copy):
            subprocess.run(["strip", "-o", copy, os.path.join(bin_dir, name)], check=True)
    average_port, map_port = free_port(), free_port()
    peers = f"movingAvg=127.0.0.1:{average_port},map=127.0.0.1:{map_port}"
    average = subprocess.Popen([host, "serve", "--app", app, "--service", "movingAvg", "--port", str(average_port),
                                "--peers", peers, "--log-level", "error", *keyed], stdout=subprocess.DEVNULL)
    out = os.path.join(tmp, f"callgrind.{variant}.{requests}")
    # map is public with a key, so that its start-up needs no signed request; the requests are signed anyway.
    mapped = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", host, "serve", "--app", app,
                               "--service", "map", "--port", str(map_port), "--peers", peers, "--log-level", "error",
                               *keyed, *(["--public"] if keyed else [])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(average_port)
        wait_port(map_port, seconds=180)
        for _ in range(requests):
            headers = [("Dyninka-Route", "movingAvg()")]
            if variant == "traceparent":
                headers.append(("traceparent", TRACEPARENT))
            if variant == "appkey":
                headers.append(("Dyninka-Auth", auth("map", "movingAvg()", int(time.time() * 1000) + 60_000)))
            post(map_port, headers)
    finally:
        mapped.terminate()
        mapped.wait(timeout=120)
        average.terminate()
        average.wait(timeout=30)
    with open(out) as f:
        text = f.read()
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if not found:
        raise SystemExit(f"no instruction total in {out}")
    return int(found.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="folder with a release dyninka-host and libDyninkaFixture.so (default: swift build -c release)")
    ap.add_argument("--requests", default="200,1200", help="the two request counts (default 200,1200)")
    ap.add_argument("--variants", default="plain,traceparent", help="plain,traceparent[,appkey] (see above)")
    args = ap.parse_args()
    bin_dir = args.bin or subprocess.run("swift build -c release --show-bin-path", shell=True, cwd=ROOT, check=True,
                                         capture_output=True, text=True).stdout.strip()
    low, high = (int(n) for n in args.requests.split(","))
    per = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants.split(","):
            a = instructions(bin_dir, variant, low, tmp)
            b = instructions(bin_dir, variant, high, tmp)
            per[variant] = (b - a) / (high - low)
            print(f"{variant}: {per[variant]:,.0f} instructions per request at map ({a:,} for {low}, {b:,} for {high})", flush=True)
    lines = [f"# Instructions per forwarding hop ({datetime.date.today()})", "",
             f"Machine: {platform.node()}, Linux {platform.release()}. Command: `python3 bench/hop_instructions.py "
             f"--requests {args.requests} --variants {args.variants}` (callgrind on `map` forwarding to `movingAvg`, "
             "stripped release builds; per request = the difference of the two runs over the difference of their counts).", "",
             "| variant | instructions per request at map | against plain |", "|---|---|---|"]
    for variant, value in per.items():
        base = per.get("plain")
        delta = "" if base is None or variant == "plain" else f"{value - base:+,.0f} ({(value - base) / base * 100:+.1f}%)"
        lines.append(f"| {variant} | {value:,.0f} | {delta} |")
    path = os.path.join(ROOT, "bench", "results", f"{datetime.date.today()}-{platform.node()}-hop-instructions.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
