#!/usr/bin/env python3
# Run: python3 bench/checkpoint_bench.py [--requests 20000] [--workers 1,10] [--rounds 3] [--no-build]
"""What the checkpoint of @Placed state costs per update.

One release dyninka-host serves the fixture's movingAvg (its @Placed state: a count and an
average; every request updates it) three ways, interleaved in rounds: no checkpoint;
`--checkpoint redis://...` with `--checkpoint-interval 0` (an update is answered only once the
store holds it; writes are group-committed: one MSET covers every update that ended while the
previous write was under way); and with `--checkpoint-interval 100` (answered at once, written at
most every 100 ms). The store is a redis-server of its own on loopback (no persistence: the
network round trip and the store's work, not a disk). hey keep-alive off, pinned apart from the
servers; per request: the host's CPU, redis-server's CPU, the writes, the rate and the latency.

Results go to bench/results/DATE-HOST-checkpoint.md. Nothing here runs in the test suite.
"""
import argparse
import datetime
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hop_bench  # noqa: E402

ROOT = hop_bench.ROOT
BODY = '{"value":10}'
MODES = [("none", None), ("interval 0", 0), ("interval 100 ms", 100)]


def writes(port):
    """Checkpoint writes stored so far (0 without a checkpoint)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(r'dyninka_checkpoint_writes_total\{outcome="stored"\} (\d+)', text)
    return int(m.group(1)) if m else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=20000, help="requests per run (default 20000)")
    ap.add_argument("--workers", default="1,10", help="concurrent clients (default 1,10)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    if not args.no_build:
        for product in ("dyninka-host", "DyninkaFixture"):
            hop_bench.sh(f"swift build -c release --product {product} >/dev/null")
    release = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    redis_port = hop_bench.free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, preexec_fn=hop_bench.pin_servers)
    hosts = {}
    started = datetime.datetime.now(datetime.timezone.utc)
    per = {(mode, w): [] for mode, _ in MODES for w in workers}
    try:
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(redis_port), "ping"], capture_output=True, text=True).stdout.strip() == "PONG":
                break
            time.sleep(0.05)
        for mode, interval in MODES:
            port = hop_bench.free_port()
            extra = [] if interval is None else ["--checkpoint", f"redis://127.0.0.1:{redis_port}/bench-{port}",
                                                 "--checkpoint-interval", str(interval)]
            hosts[mode] = (port, subprocess.Popen(
                [os.path.join(release, "dyninka-host"), "serve", "--app", os.path.join(release, "libDyninkaFixture.so"),
                 "--service", "movingAvg", "--port", str(port), "--log-level", "error"] + extra,
                stdout=subprocess.DEVNULL, preexec_fn=hop_bench.pin_servers))
        for mode, (port, _) in hosts.items():
            hop_bench.wait_http(port, path="/readyz")
            r = hop_bench.hey(f"http://127.0.0.1:{port}/", 1, count=200, body=BODY)
            if r["errors"]:
                raise SystemExit(f"{mode}: {r['errors']} errors: {r['raw'][-400:]}")
        for round_ in range(args.rounds):
            for w in workers:
                for mode, (port, host) in hosts.items():
                    print(f"... {mode}, {w} worker(s), round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
                    cpu0, redis0, writes0 = hop_bench.cpu_seconds(host.pid), hop_bench.cpu_seconds(redis.pid), writes(port)
                    r = hop_bench.hey(f"http://127.0.0.1:{port}/", w, count=args.requests, body=BODY)
                    cpu1, redis1, writes1 = hop_bench.cpu_seconds(host.pid), hop_bench.cpu_seconds(redis.pid), writes(port)
                    done = max(r["ok"], 1)
                    per[(mode, w)].append({"cpu": (cpu1 - cpu0) / done * 1e6, "redis": (redis1 - redis0) / done * 1e6,
                                           "writes": (writes1 - writes0) / done, "rps": r["rps"], "p50": r["p50_ms"],
                                           "p99": r["p99_ms"], "errors": r["errors"]})
    finally:
        for _, host in hosts.values():
            host.terminate()
            host.wait(timeout=10)
        redis.kill()
        redis.wait(timeout=10)

    def med(rows, key):
        values = sorted(row[key] for row in rows)
        return values[len(values) // 2]
    lines = [f"# The checkpoint's cost per update, {started:%Y-%m-%d %H:%M} UTC", "",
             f"Machine: {hop_bench.machine()}. Command: `python3 bench/checkpoint_bench.py --requests {args.requests} "
             f"--workers {args.workers} --rounds {args.rounds}`. One release dyninka-host per mode serving the fixture's movingAvg "
             "(every request updates its @Placed state); the store is a redis-server on loopback without persistence. "
             f"hey -disable-keepalive, {args.requests} requests per run, {hop_bench.pinning_note()}. Medians of {args.rounds} "
             "interleaved rounds; CPU is utime+stime per acknowledged update.", "",
             "| mode | workers | req/s | p50 ms | p99 ms | host CPU us/req | redis CPU us/req | writes per update | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for w in workers:
        for mode, _ in MODES:
            rows = per[(mode, w)]
            lines.append(f"| {mode} | {w} | {med(rows, 'rps'):.0f} | {med(rows, 'p50'):.2f} | {med(rows, 'p99'):.2f} | "
                         f"{med(rows, 'cpu'):.1f} | {med(rows, 'redis'):.1f} | {med(rows, 'writes'):.3f} | {sum(r['errors'] for r in rows)} |")
    lines += ["", "Interval 0 holds each answer for a write (a loopback round trip to the store and its MSET); concurrent "
              "updates share one write (writes per update below 1). Interval 100 ms answers at once; what a lost node "
              "costs it is up to 100 ms of updates (plus one write)."]
    hop_bench.write_results(lines, started, "checkpoint", echo=True)


if __name__ == "__main__":
    main()
