#!/usr/bin/env python3
# Run (root): python3 bench/testbed_bench.py [--duration 5] [--workers 1,5,10,50] [--rounds 2] [--profiles lan,wan,lossy]
"""The paper's experiment across a fog test bed: point to point vs gateway mode on network
namespaces joined by emulated links (configs/testbed/fog.json: cloud, edge-1, edge-2).

Placement: in gateway mode the gateway and the orchestrator run on `cloud` (where a central FaaS
gateway lives); in both topologies the functions spread over the edge nodes (`--spread
edge-1,edge-2`) and the sensor runs next to `get` on an edge node. The load generator (hey,
keep-alive off) runs in the bed's own `client` namespace, an edge device: its link to cloud has the
same profile as the edge <-> cloud links; edge <-> edge is always a LAN.

Link profiles (edge <-> cloud and client <-> cloud; one-way delay, so a round trip is twice it):
  lan    no conditions
  wan    20 ms +- 5 ms
  lossy  20 ms, 1% loss per direction

For each profile, topology and worker count: throughput, mean / p50 / p99 latency, errors, and the
per-hop times from Server-Timing of sequential requests. Topologies cannot share the bed (they use
the same names), so each round starts one, measures every worker count, stops it, then the other;
rounds interleave them. Writes bench/results/DATE-HOST-testbed.md. Nothing here runs in the tests.
"""
import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hop_bench  # noqa: E402
from gateway_bench import sh  # noqa: E402

ROOT = hop_bench.ROOT
APP = "examples/SmartBuilding/App.swift"
BED = "configs/testbed/fog.json"
PROFILES = {
    "lan": {},
    "wan": {"delay": 20, "jitter": 5},
    "lossy": {"delay": 20, "loss": 1},
}
CLIENT = "dynbed-client"


def set_profile(dyninka, name):
    p = PROFILES[name]
    for a, b in (("edge-1", "cloud"), ("edge-2", "cloud"), ("client", "cloud")):
        args = [dyninka, "testbed", "link", a, b]
        for key in ("delay", "jitter", "loss"):
            if key in p:
                args += [f"--{key}", str(p[key])]
        subprocess.run(args, check=True, cwd=ROOT, capture_output=True)


class BedApp:
    """`dyninka run --testbed` of the app, point to point or gateway mode."""

    def __init__(self, dyninka, host, gateway, spread="edge-1,edge-2", extra=()):
        args = [dyninka, "run", APP, "--testbed", BED, "--spread", spread, "--host-binary", host, *extra]
        if gateway:
            args.append("--gateway")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self.nodes, self.entry = {}, None
        deadline = time.time() + 120
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("dyninka run --testbed exited before printing its entry")
            parts = line.split()
            if len(parts) == 3 and parts[2].startswith("http://"):
                self.nodes[parts[0]] = parts[1]
            elif len(parts) == 3 and parts[2] == "(sidecar)":
                self.nodes[parts[0]] = parts[1]
            if len(parts) == 3 and parts[2].startswith("http://"):
                self.urls = getattr(self, "urls", {})
                self.urls[parts[0]] = parts[2]
            if parts and parts[0] == "entry":
                self.entry = parts[1]
                break
        time.sleep(0.5)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def host_pids(self):
        """The dyninka-host processes of this run, by the services they serve."""
        pids = {}
        for pid in hop_bench.children(self.proc.pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = [a.decode() for a in f.read().split(b"\0") if a]
            except OSError:
                continue
            if "--service" in argv:
                pids[argv[argv.index("--service") + 1]] = pid
        return pids

    def cpu(self):
        return {name: hop_bench.cpu_seconds(pid) for name, pid in self.host_pids().items()}

    def user(self):
        return sum(hop_bench.cpu_seconds(pid, True) for pid in self.host_pids().values())


def bed_tools(build):
    """The dyninka CLI (with the link emulator beside it) and the release dyninka-host, built first
    unless `build` is false."""
    if build:
        sh("scripts/bootstrap --with-bench")
        sh("swift build --product dyninka >/dev/null && swift build --product dyninka-linkemu >/dev/null")
        sh("swift build -c release --product dyninka-host --scratch-path .build-release-host >/dev/null")
    return f"{sh('swift build --show-bin-path', True).strip()}/dyninka", f"{ROOT}/.build-release-host/release/dyninka-host"


SAMPLER = r"""
import http.client, json, sys, time, urllib.parse
url, n = sys.argv[1], int(sys.argv[2])
u = urllib.parse.urlparse(url)
out = []
for _ in range(n):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    t0 = time.perf_counter()
    c.request("POST", u.path or "/", body=b"", headers={"Connection": "close"})
    r = c.getresponse(); r.read()
    out.append({"status": r.status, "ms": (time.perf_counter() - t0) * 1000, "timing": r.getheader("Server-Timing") or ""})
    c.close()
print(json.dumps(out))
"""


def sample(url, n):
    """Sequential requests from the client node: end to end and each hop's Server-Timing."""
    raw = subprocess.run(["ip", "netns", "exec", CLIENT, sys.executable, "-c", SAMPLER, url, str(n)],
                         capture_output=True, text=True, check=True).stdout
    rows = [r for r in json.loads(raw) if r["status"] in (200, 204)]
    hops = {}
    for r in rows:
        for entry in r["timing"].split(","):
            m = re.match(r"\s*([\w-]+);dur=([\d.]+)(?:;fn=([\d.]+))?", entry)
            if m:
                hops.setdefault(m.group(1), []).append((float(m.group(2)), float(m.group(3) or 0)))
    return {
        "n": len(rows),
        "total": sum(r["ms"] for r in rows) / max(len(rows), 1),
        "hops": {k: (sum(d for d, _ in v) / len(v), sum(f for _, f in v) / len(v), len(v)) for k, v in hops.items()},
    }


def plot(results, profiles, workers, prefix):
    """Throughput and mean latency against workers, one panel per profile (log scales: the WAN
    gateway rows are two orders of magnitude below)."""
    plt = hop_bench.pyplot()
    if plt is None:
        return []
    written = []
    for key, label, name in (("rps", "requests / s", "throughput"), ("mean_ms", "mean latency (ms)", "latency")):
        # squeeze=False: a row of axes even for one profile (`--profiles lossy`).
        fig, axes = plt.subplots(1, len(profiles), figsize=(4 * len(profiles), 3.6), sharey=True, squeeze=False)
        axes = axes[0]
        for ax, profile in zip(axes, profiles):
            for topology in ("p2p", "gateway"):
                ax.plot(workers, [max(results[(profile, topology, w)][key], 1e-3) for w in workers], marker="o", label=topology)
            ax.set_title(profile)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(workers)
            ax.set_xticklabels([str(w) for w in workers])
            ax.set_xlabel("hey workers")
            ax.grid(True, alpha=0.3)
        axes[0].set_ylabel(label)
        axes[0].legend()
        fig.suptitle(f"smart building across the fog test bed: {name}")
        fig.tight_layout()
        out = f"{prefix}-{name}.png"
        fig.savefig(out, dpi=100)
        plt.close(fig)
        written.append(out)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=5, help="seconds per load run (default 5)")
    ap.add_argument("--workers", default="1,5,10,50")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; rows show the median (default 2)")
    ap.add_argument("--profiles", default="lan,wan,lossy")
    ap.add_argument("--samples", type=int, default=60, help="sequential requests for the per-hop split")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the test bed needs root (network namespaces, iptables)")
    dyninka, host = bed_tools(build=not args.no_build)
    workers = [int(w) for w in args.workers.split(",")]
    profiles = args.profiles.split(",")
    hop_bench.PIN["on"] = False  # the bed's processes run where the kernel puts them; hey is one more process
    started = datetime.datetime.now(datetime.timezone.utc)
    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)

    subprocess.run([dyninka, "testbed", "up", BED], check=True, cwd=ROOT, capture_output=True)
    results, splits, probes, placements = {}, {}, {}, {}
    try:
        for profile in profiles:
            set_profile(dyninka, profile)
            probe = subprocess.run([dyninka, "testbed", "probe", "edge-1", "cloud", "--count", "30"], cwd=ROOT,
                                   capture_output=True, text=True).stdout.strip()
            probes[profile] = probe
            runs = {}
            for round_ in range(args.rounds):
                for topology in ("p2p", "gateway"):
                    app = BedApp(dyninka, host, topology == "gateway")
                    placements[topology] = app.nodes
                    try:
                        for w in workers:
                            print(f"... {profile}, {topology}, {w} workers, round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
                            r = hop_bench.hey(app.entry, w, duration=args.duration, body="", prefix=["ip", "netns", "exec", CLIENT], timeout=30)
                            runs.setdefault((topology, w), []).append(r)
                        if round_ == 0:
                            splits[(profile, topology)] = sample(app.entry, args.samples)
                    finally:
                        app.stop()
            for key, rs in runs.items():
                r = hop_bench.median_run(rs)
                r["error_rate"] = r["errors"] / max(sum(x["ok"] + x["errors"] for x in rs), 1) * 100
                results[(profile,) + key] = r
    finally:
        subprocess.run([dyninka, "testbed", "down"], cwd=ROOT, capture_output=True)

    emit(f"# Point to point vs gateway across a fog test bed, {started:%Y-%m-%d %H:%M} UTC")
    emit()
    emit(f"Machine: {hop_bench.machine()}. Command: `sudo python3 bench/testbed_bench.py --duration {args.duration:g} "
         f"--workers {args.workers} --rounds {args.rounds} --profiles {args.profiles}`. Bed: `{BED}` (network namespaces "
         "cloud, edge-1, edge-2 behind a router namespace; links emulated by dyninka-linkemu (delay) and iptables (loss)), "
         "plus the bed's `client` namespace where hey runs (keep-alive off, "
         f"{args.duration:g} s per run, {args.rounds} interleaved rounds, each row the median round, errors summed). "
         "Profiles apply to edge-1 <-> cloud, edge-2 <-> cloud and client <-> cloud (one-way delay: a round trip is "
         "twice it); edge <-> edge and client <-> edge are a LAN. Every request makes the full default dataflow "
         "(get -> filterTemperature -> map -> movingAvg, two thirds of the rows dropped at filterTemperature with 204).")
    emit()
    emit("Placement (NAME NODE as `dyninka run --testbed` printed it):")
    emit()
    for topology, nodes in placements.items():
        emit(f"- {topology}: " + ", ".join(f"{k} on {v}" for k, v in nodes.items()))
    emit()
    emit("Emulated link, measured by `dyninka testbed probe edge-1 cloud --count 30` before each profile:")
    emit()
    for profile in profiles:
        emit(f"- {profile}: {probes[profile]}")
    emit()
    emit("## Throughput, latency, errors (the paper's Tables 2-5, across nodes)")
    emit()
    emit("| profile | topology | workers | req/s | mean ms | p50 ms | p99 ms | errors | error rate |")
    emit("|---|---|---|---|---|---|---|---|---|")
    for profile in profiles:
        for topology in ("p2p", "gateway"):
            for w in workers:
                r = results[(profile, topology, w)]
                p99 = f"{r['p99_ms']:.1f}" if r["p99_ms"] > 0 else "n/a (too few requests)"
                emit(f"| {profile} | {topology} | {w} | {r['rps']:.0f} | {r['mean_ms']:.1f} | {r['p50_ms']:.1f} | {p99} | "
                     f"{r['errors']} | {r['error_rate']:.2f}% |")
    emit()
    emit("| profile | workers | p2p / gateway throughput | p2p / gateway mean latency |")
    emit("|---|---|---|---|")
    for profile in profiles:
        for w in workers:
            p, g = results[(profile, "p2p", w)], results[(profile, "gateway", w)]
            emit(f"| {profile} | {w} | {p['rps'] / max(g['rps'], 1):.2f}x | {p['mean_ms'] / max(g['mean_ms'], 1e-9):.2f}x |")
    emit()
    emit(f"## Per-hop times (Server-Timing, {args.samples} sequential requests, mean ms)")
    emit()
    emit("dur is the hop's whole time at that service (its function, and for a forwarding hop the call to the next); "
         "fn is the function alone.")
    emit()
    emit("| profile | topology | end to end | per service: dur / fn |")
    emit("|---|---|---|---|")
    for profile in profiles:
        for topology in ("p2p", "gateway"):
            s = splits[(profile, topology)]
            hops = "; ".join(f"{k} {d:.1f} / {f:.2f}" for k, (d, f, _) in s["hops"].items())
            emit(f"| {profile} | {topology} | {s['total']:.1f} | {hops} |")
    emit()
    os.makedirs(f"{ROOT}/bench/results", exist_ok=True)
    prefix = f"{ROOT}/bench/results/{started:%Y-%m-%d}-{os.uname().nodename.split('.')[0]}-testbed"
    for png in plot(results, profiles, workers, prefix):
        emit(f"![{os.path.basename(png)}]({os.path.basename(png)})")
    out = prefix + ".md"
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
