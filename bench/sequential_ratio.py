#!/usr/bin/env python3
# Run: python3 bench/sequential_ratio.py [--requests 3000] [--rounds 5] [--no-build]
"""Point to point vs gateway at one request in flight, with a client of small footprint.

At 1 worker a request's time is the servers' work plus the client's own, and hey's own share
(120-180 us of CPU a request here) is the same for both topologies, so it pulls their throughput
ratio towards 1. This measures the same two topologies of the smart-building app as
gateway_bench.py with bench/seq_client.c instead: sequential keep-alive-free POSTs, pinned to
CPU 0 like hey, the servers on the other CPUs. Per round and topology: mean time per request and
the servers' CPU per request (utime+stime of every process from /proc). Rounds interleave the
topologies; the table lists every round and the median.
Writes bench/results/DATE-HOST-sequential-ratio.md. Nothing here runs in the test suite.
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway_bench  # noqa: E402  (the topologies)
import hop_bench  # noqa: E402  (pinning, /proc readings)

ROOT = hop_bench.ROOT


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=3000, help="requests per topology and round (default 3000)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--no-build", action="store_true", help="use the existing builds")
    args = ap.parse_args()
    os.environ["PATH"] += ":/usr/sbin"
    release, debug = gateway_bench.binaries(args.no_build)
    client = os.path.join(tempfile.mkdtemp(prefix="dyninka-seq-"), "seq_client")
    subprocess.run(["cc", "-O2", "-o", client, os.path.join(ROOT, "bench", "seq_client.c")], check=True)
    pin = ["taskset", "-c", ",".join(map(str, sorted(hop_bench.client_cpus())))] if hop_bench.PIN["on"] else []
    started = datetime.datetime.now(datetime.timezone.utc)
    topos = {}
    rows = {"p2p": [], "gateway": []}
    try:
        topos["p2p"] = gateway_bench.Topology(debug, release, False)
        topos["gateway"] = gateway_bench.Topology(debug, release, True)
        for round_ in range(args.rounds):
            for name, topo in topos.items():
                print(f"... {name}, round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
                before = sum(topo.cpu().values())
                out = subprocess.run(pin + [client, str(topo.port), topo.path, str(args.requests), ""],
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"seq_client against {name} failed: {out.stdout}{out.stderr}")
                cpu = (sum(topo.cpu().values()) - before) / args.requests * 1e6
                rows[name].append((float(out.stdout.split()[0]), cpu))
    finally:
        for topo in topos.values():
            topo.stop()
    lines = [f"# Point to point vs gateway at one request in flight, {started:%Y-%m-%d %H:%M} UTC", "",
             f"Machine: {hop_bench.machine()}. Command: `python3 bench/sequential_ratio.py --requests {args.requests} "
             f"--rounds {args.rounds}`. Client: bench/seq_client.c, {args.requests} sequential keep-alive-free POSTs per "
             f"topology and round, {hop_bench.pinning_note().replace('hey', 'the client')}. The smart-building app as in gateway_bench.py "
             "(a request visits 2.5 services on average). Servers' CPU: utime+stime of every process of the "
             "topology from /proc per request.", "",
             "| round | p2p us/request | gateway us/request | gateway / p2p time | p2p servers' CPU us | gateway servers' CPU us | gateway / p2p CPU |",
             "|---|---|---|---|---|---|---|"]
    ratios, cpu_ratios = [], []
    for i, ((p_us, p_cpu), (g_us, g_cpu)) in enumerate(zip(rows["p2p"], rows["gateway"])):
        ratios.append(g_us / p_us)
        cpu_ratios.append(g_cpu / p_cpu)
        lines.append(f"| {i + 1} | {p_us:.1f} | {g_us:.1f} | {g_us / p_us:.2f}x | {p_cpu:.0f} | {g_cpu:.0f} | {g_cpu / p_cpu:.2f}x |")
    lines += ["", f"Median: gateway / p2p time per request {statistics.median(ratios):.2f}x (the throughput ratio at one "
              f"request in flight), servers' CPU per request {statistics.median(cpu_ratios):.2f}x."]
    text = "\n".join(lines) + "\n"
    print(text)
    path = os.path.join(ROOT, "bench", "results", f"{started:%Y-%m-%d}-{platform.node()}-sequential-ratio.md")
    with open(path, "w") as f:
        f.write(text)
    print(f"written to {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
