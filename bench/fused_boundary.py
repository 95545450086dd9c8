#!/usr/bin/env python3
# Run: python3 bench/fused_boundary.py [--requests 20000] [--stages 1,17,33,63] [--rounds 5] [--no-build]
"""What one fused boundary costs: the CPU a fused host spends per stage a request adds.

One release dyninka-host serves `hopA,hopB` of the fixture table fused (each takes a BlobRequest
and returns it: no argument, next to no work). A request POSTs hopA with a route of N-1 steps,
hopB() and hopA() in turn: N services in process, N-1 typed boundaries (the value passed as it is,
nothing encoded). The host's CPU time per request
(utime+stime from /proc; hey pinned to another CPU, keep-alive off, one worker) is measured for
each N, interleaved in rounds; the slope of CPU against N is the cost of one more fused stage: the boundary (plan lookup, the
stage's invocation, its timing entry and metrics) plus the stage's own tiny function. The same
slope over hops (N hosts point to point) is in bench/results/*-hops.md: 48-61 us per hop.

Results go to bench/results/DATE-HOST-fused-boundary.md. Nothing here runs in the test suite.
"""
import argparse
import datetime
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hop_bench  # noqa: E402

ROOT = hop_bench.ROOT
BODY = '{"size":16}'


def route(stages):
    """The route after hopA for a request of `stages` services in all (hopB and hopA in turn)."""
    return ".".join(["hopB()", "hopA()"][i % 2] for i in range(stages - 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=20000, help="requests per run (default 20000)")
    ap.add_argument("--stages", default="1,17,33,63", help="services per request (default 1,17,33,63: long routes lift the stages' cost above the per-connection noise)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    stages = [int(s) for s in args.stages.split(",")]
    if not args.no_build:
        for product in ("dyninka-host", "DyninkaFixture"):
            hop_bench.sh(f"swift build -c release --product {product} >/dev/null")
    release = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    port = hop_bench.free_port()
    host = subprocess.Popen(
        [os.path.join(release, "dyninka-host"), "serve", "--app", os.path.join(release, "libDyninkaFixture.so"),
         "--service", "hopA,hopB", "--port", str(port), "--log-level", "error", "--max-hops", "64", "--max-visits", "64"],
        stdout=subprocess.DEVNULL, preexec_fn=hop_bench.pin_servers)
    started = datetime.datetime.now(datetime.timezone.utc)
    per = {n: [] for n in stages}
    try:
        hop_bench.wait_http(port)
        url = f"http://127.0.0.1:{port}/hopA"
        for n in stages:  # warm-up, and a check that every step ran
            r = hop_bench.hey(url, 1, count=200, headers=(f"Dyninka-Route: {route(n)}",), body=BODY)
            if r["errors"]:
                raise SystemExit(f"{n} stages: {r['errors']} errors: {r['raw'][-400:]}")
        for round_ in range(args.rounds):
            for n in stages:
                print(f"... {n} stages, round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
                before, user_before = hop_bench.cpu_seconds(host.pid), hop_bench.cpu_seconds(host.pid, True)
                r = hop_bench.hey(url, 1, count=args.requests, headers=(f"Dyninka-Route: {route(n)}",), body=BODY)
                after, user_after = hop_bench.cpu_seconds(host.pid), hop_bench.cpu_seconds(host.pid, True)
                done = max(r["ok"], 1)
                per[n].append(((after - before) / done * 1e6, r["rps"], r["errors"], (user_after - user_before) / done * 1e6))
    finally:
        host.terminate()
        host.wait(timeout=10)
    median = {n: sorted(x[0] for x in per[n])[len(per[n]) // 2] for n in stages}
    user = {n: sorted(x[3] for x in per[n])[len(per[n]) // 2] for n in stages}

    def slope_of(values):
        """Least squares over the medians: us per added stage."""
        mx = sum(stages) / len(stages)
        my = sum(values.values()) / len(stages)
        return sum((n - mx) * (values[n] - my) for n in stages) / sum((n - mx) ** 2 for n in stages)
    slope, user_slope = slope_of(median), slope_of(user)
    lines = [f"# One fused boundary, {started:%Y-%m-%d %H:%M} UTC", "",
             f"Machine: {hop_bench.machine()}. Command: `python3 bench/fused_boundary.py --requests {args.requests} "
             f"--stages {args.stages} --rounds {args.rounds}`. One release dyninka-host serving hopA,hopB fused (each returns "
             "its BlobRequest); each request POSTs hopA with a route of N-1 steps, hopB() and hopA() in turn: N services, N-1 fused boundaries "
             f"(typed values, nothing encoded between them). hey -c 1 -disable-keepalive, {args.requests} requests per run, "
             f"{hop_bench.pinning_note()}; CPU is the host's utime+stime per request, the median of {args.rounds} interleaved rounds.",
             "", "| services per request | host CPU us/req (median) | of it user | every round (CPU) | req/s | errors |",
             "|---|---|---|---|---|---|"]
    for n in stages:
        lines.append(f"| {n} | {median[n]:.1f} | {user[n]:.1f} | {' '.join(f'{x[0]:.1f}' for x in per[n])} | "
                     f"{' '.join(f'{x[1]:.0f}' for x in per[n])} | {sum(x[2] for x in per[n])} |")
    lines += ["", f"Slope (least squares over the medians): **{slope:.2f} us of CPU per fused stage** ({user_slope:.2f} us of it "
              "user time): the boundary, and the stage's own call, which returns its input. The kernel's "
              "share per connection varies by several us between rounds; the stages' work is all user time."]
    hop_bench.write_results(lines, started, "fused-boundary", echo=True)


if __name__ == "__main__":
    main()
