#!/usr/bin/env python3
# Run: python3 bench/gateway_bench.py [--duration 10] [--workers 1,5,10,50] [--more] [--rounds 3] [--no-pin] [--no-build]
"""The paper's experiment on our code: the smart-building app point to point vs an OpenFaaS-like
gateway topology, same services, table, payloads and keep-alive policy (none), driven by hey.

For each topology and worker count: throughput, mean / p50 / p99 latency, error rate (non-2xx
answers and connection errors), CPU time per request of every process (utime+stime from /proc),
peak RSS (VmHWM); the overhead split of the paper's Figure 11 from Server-Timing (time inside the
functions vs the whole request); and an nginx 4-hop proxy chain (four one-worker nginx processes)
as the no-processing reference. Both topologies and nginx run side by side, interleaved in --rounds
rounds per worker count (each row the median round); hey is pinned to CPU 0 and the servers to the
other CPUs unless --no-pin.
Writes bench/results/DATE-HOST-gateway.md and PNG plots of throughput and latency against workers.
Nothing here runs in the test suite.
"""
import argparse
import datetime
import http.client
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hop_bench  # noqa: E402  (shared helpers: hey, nginx, /proc readings)

ROOT = hop_bench.ROOT
APP = "examples/SmartBuilding/App.swift"


def sh(cmd, capture=False):
    return subprocess.run(cmd, shell=True, check=True, cwd=ROOT, capture_output=capture, text=True).stdout


def build():
    sh("scripts/bootstrap --with-bench")
    sh("swift build -c release --product dyninka-host >/dev/null")
    sh("swift build --product dyninka >/dev/null")
    release = sh("swift build -c release --show-bin-path", True).strip()
    debug = sh("swift build --show-bin-path", True).strip()
    sh(f"{debug}/dyninka build {APP} >/dev/null")
    return release, debug


def binaries(no_build):
    """The release and debug bin folders: built now, or as they are with `no_build`."""
    if no_build:
        return sh("swift build -c release --show-bin-path", True).strip(), sh("swift build --show-bin-path", True).strip()
    return build()


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


class Topology:
    """`dyninka run` of the app (point to point or --gateway), found process by process."""

    def __init__(self, debug_bin, release_bin, gateway, extra=()):
        args = [f"{debug_bin}/dyninka", "run", APP, "--base-port", "0", "--host-binary", f"{release_bin}/dyninka-host", *extra]
        if gateway:
            args.append("--gateway")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True, preexec_fn=hop_bench.pin_servers)
        self.urls = {}
        deadline = time.time() + 300
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("dyninka run exited before printing its entry URL")
            name, url = line.split()
            self.urls[name] = url
            if name == "entry":
                break
        m = re.match(r"http://127\.0\.0\.1:(\d+)(/.*)?", self.urls["entry"])
        self.port, self.path = int(m.group(1)), m.group(2) or "/"
        time.sleep(0.5)
        self.pids = {}
        for pid in hop_bench.children(self.proc.pid):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            text = [a.decode() for a in argv if a]
            if "--service" in text:
                name = text[text.index("--service") + 1]
            elif "gateway-mode" in text:
                name = text[text.index("gateway-mode") + 1]
            elif any("sensor" in a for a in text):
                name = "sensor"
            else:
                name = os.path.basename(text[0])
            self.pids[name] = pid

    def cpu(self):
        return {n: hop_bench.cpu_seconds(p) for n, p in self.pids.items()}

    def user(self):
        return sum(hop_bench.cpu_seconds(p, True) for p in self.pids.values())

    def rss(self):
        return {n: peak_rss_mib(p) for n, p in self.pids.items()}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def timings(port, path, samples):
    """Server-Timing of `samples` sequential requests: end to end, function time, hops."""
    total = fn = 0.0
    hops = n = 0
    for _ in range(samples):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        t0 = time.perf_counter()
        c.request("POST", path, body=b"", headers={"Connection": "close"})
        r = c.getresponse()
        r.read()
        elapsed = (time.perf_counter() - t0) * 1000
        header = r.getheader("Server-Timing") or ""
        c.close()
        if r.status not in (200, 204):
            continue
        entries = [e.strip() for e in header.split(",") if e.strip()]
        total += elapsed
        fn += sum(float(m.group(1)) for e in entries for m in [re.search(r";fn=([\d.]+)", e)] if m)
        hops += len(entries)
        n += 1
    return {"total": total / max(n, 1), "fn": fn / max(n, 1), "hops": hops / max(n, 1), "n": n}


def plot(results, workers, path_prefix):
    plt = hop_bench.pyplot()
    if plt is None:
        return []
    written = []
    for key, label, name in (("rps", "requests / s", "throughput"), ("mean_ms", "mean latency (ms)", "latency")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for topology in ("p2p", "gateway", "nginx4x1"):
            ys = [results[(topology, w)][key] for w in workers if (topology, w) in results]
            if ys:
                ax.plot(workers[:len(ys)], ys, marker="o", label=topology)
        ax.set_xlabel("hey workers (-disable-keepalive)")
        ax.set_ylabel(label)
        ax.set_xscale("log")
        ax.set_xticks(workers)
        ax.set_xticklabels([str(w) for w in workers])
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax.set_title(f"smart building: {name} against workers")
        out = f"{path_prefix}-{name}.png"
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        plt.close(fig)
        written.append(out)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=10, help="seconds per load run (default 10; the paper used 600)")
    ap.add_argument("--workers", default="1,5,10,50", help="hey worker counts (default 1,5,10,50)")
    ap.add_argument("--more", action="store_true", help="also 100 and 200 workers")
    ap.add_argument("--samples", type=int, default=300, help="requests sampled for the Server-Timing split")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-pin", action="store_true", help="let hey share the CPUs with the servers")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per worker count; rows show the median (default 3)")
    ap.add_argument("--sensor-delay-ms", type=float, default=0,
                    help="the sensor answers this much later, like a remote feed (default 0: loopback speed)")
    ap.add_argument("--old", help="folder with an older release dyninka-host: adds p2p-old and gateway-old, the same "
                    "topologies on that host binary, interleaved with the others (an A/B in one run)")
    args = ap.parse_args()
    if args.sensor_delay_ms > 0:
        os.environ["SENSOR_DELAY_MS"] = f"{args.sensor_delay_ms:g}"  # sensor.py reads it; dyninka run passes it on
    hop_bench.PIN["on"] = hop_bench.PIN["on"] and not args.no_pin
    os.environ["PATH"] += ":/usr/sbin"
    release, debug = binaries(args.no_build)
    workers = [int(w) for w in args.workers.split(",")] + ([100, 200] if args.more else [])
    started = datetime.datetime.now(datetime.timezone.utc)
    tmp = tempfile.mkdtemp(prefix="dyninka-gw-bench-")
    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)

    emit(f"# Point to point vs gateway: the smart-building app, {started:%Y-%m-%d %H:%M} UTC")
    emit()
    emit(f"Machine: {hop_bench.machine()}. Command: `python3 bench/gateway_bench.py --duration {args.duration:g} "
         f"--workers {','.join(map(str, workers))} --rounds {args.rounds}"
         f"{f' --sensor-delay-ms {args.sensor_delay_ms:g}' if args.sensor_delay_ms > 0 else ''}"
         f"{f' --old {args.old}' if args.old else ''}`. Load: hey -disable-keepalive, POST to the entry "
         f"({args.duration:g} s per run, the paper used 10 minutes; {args.rounds} interleaved rounds per worker count, "
         f"each row the median round, errors summed over all rounds); {hop_bench.pinning_note()}. "
         "Hosts: release dyninka-host; the app library built by `dyninka build` (release). Every request makes "
         "the full default dataflow: get (reads the next sensor row"
         f"{f', which answers {args.sensor_delay_ms:g} ms late' if args.sensor_delay_ms > 0 else ''}) -> filterTemperature (drops non-temperature "
         "rows: 204) -> map -> movingAvg. CPU is utime+stime per request from /proc (hey's own apart); RSS is VmHWM. "
         "nginx4x1: four one-worker nginx processes chained by proxy_pass, the no-processing reference.")
    emit()
    results = {}
    # Both topologies and the nginx reference run side by side (idle ones cost nothing) and
    # every worker count interleaves them, round after round: drift on the machine (other load,
    # the TIME_WAIT table filling) then affects all alike. Each row is the median round.
    topos = {"p2p": Topology(debug, release, False)}
    rows = []
    ng = None
    try:
        topos["gateway"] = Topology(debug, release, True)
        if args.old:
            topos["p2p-old"] = Topology(debug, args.old, False)
            topos["gateway-old"] = Topology(debug, args.old, True)
        ng = hop_bench.Nginx(tmp, separate=True)
        targets = [(name, topo, f"http://127.0.0.1:{topo.port}{topo.path}", "") for name, topo in topos.items()]
        targets.append(("nginx4x1", ng, f"http://127.0.0.1:{ng.ports[0]}/", "{}"))
        for w in workers:
            rounds = {name: [] for name, *_ in targets}
            for round_ in range(args.rounds):
                for name, target, url, body in targets:
                    print(f"... {name}, {w} workers, {args.duration:g} s, round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
                    before = target.cpu()
                    user0 = target.user()
                    r = hop_bench.hey(url, w, duration=args.duration, body=body)
                    after = target.cpu()
                    user1 = target.user()
                    done = max(r["ok"] + r["errors"], 1)
                    r["cpu_us"] = {k: (after[k] - before[k]) / done * 1e6 for k in after}
                    r["user_us"] = (user1 - user0) / done * 1e6 if name != "nginx4x1" else 0
                    rounds[name].append(r)
                    time.sleep(1)
            for name in rounds:
                r = hop_bench.median_run(rounds[name])
                r["error_rate"] = r["errors"] / max(sum(x["ok"] + x["errors"] for x in rounds[name]), 1) * 100
                results[(name, w)] = r
        for name, topo in topos.items():
            rows.append((name, timings(topo.port, topo.path, args.samples), topo.rss()))
    finally:
        if ng:
            ng.stop()
        for topo in topos.values():
            topo.stop()

    emit("## Throughput, latency, errors (the paper's Tables 2-5)")
    emit()
    emit("| topology | workers | req/s | mean ms | p50 ms | p99 ms | errors | error rate | CPU us/req, all processes | user us/req | hey us/req |")
    emit("|---|---|---|---|---|---|---|---|---|---|---|")
    shown = ["p2p", "gateway"] + (["p2p-old", "gateway-old"] if args.old else []) + ["nginx4x1"]
    for topology in shown:
        for w in workers:
            r = results[(topology, w)]
            emit(f"| {topology} | {w} | {r['rps']:.0f} | {r['mean_ms']:.2f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                 f"{r['errors']} | {r['error_rate']:.2f}% | {sum(r['cpu_us'].values()):.0f} | "
                 f"{r.get('user_us', 0):.0f} | {r['hey_us']:.0f} |")
    emit()
    emit("| workers | p2p / gateway throughput | p2p / gateway mean latency | p2p / nginx4x1 throughput |")
    emit("|---|---|---|---|")
    for w in workers:
        p, g, n = results[("p2p", w)], results[("gateway", w)], results[("nginx4x1", w)]
        emit(f"| {w} | {p['rps'] / max(g['rps'], 1):.2f}x | {p['mean_ms'] / max(g['mean_ms'], 1e-9):.2f}x | "
             f"{p['rps'] / max(n['rps'], 1):.2f}x |")
    emit()
    if args.old:
        emit("| workers | p2p new / old throughput | gateway new / old throughput | p2p-old / gateway-old throughput | CPU us/req p2p new / old | CPU us/req gateway new / old |")
        emit("|---|---|---|---|---|---|")
        for w in workers:
            p, g, po, go = (results[(t, w)] for t in ("p2p", "gateway", "p2p-old", "gateway-old"))
            emit(f"| {w} | {p['rps'] / max(po['rps'], 1):.2f}x | {g['rps'] / max(go['rps'], 1):.2f}x | "
                 f"{po['rps'] / max(go['rps'], 1):.2f}x | {sum(p['cpu_us'].values()):.0f} / {sum(po['cpu_us'].values()):.0f} | "
                 f"{sum(g['cpu_us'].values()):.0f} / {sum(go['cpu_us'].values()):.0f} |")
        emit()
    emit("Requests/s of every round (p2p | gateway): " + "; ".join(
        f"{w} workers " + " | ".join(" ".join(f"{x:.0f}" for x in results[(t, w)]["all_rps"]) for t in ("p2p", "gateway"))
        for w in workers))
    emit()
    emit("## CPU per request of each process (us)")
    emit()
    for w in workers:
        for topology in ("p2p", "gateway"):
            r = results[(topology, w)]
            emit(f"- {w} workers, {topology}: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["cpu_us"].items()))
                 + f"; hey {r['hey_us']:.0f}")
    emit()
    emit("## Peak RSS of each process (MiB)")
    emit()
    for name, _, rss in rows:
        emit(f"- {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(rss.items())))
    emit()
    emit(f"## Overhead split (the paper's Figure 11), {args.samples} sequential requests")
    emit()
    emit("| topology | end to end ms | inside functions ms | everything else ms | function share | Server-Timing entries |")
    emit("|---|---|---|---|---|---|")
    for name, split, _ in rows:
        emit(f"| {name} | {split['total']:.3f} | {split['fn']:.3f} | {split['total'] - split['fn']:.3f} | "
             f"{split['fn'] / max(split['total'], 1e-9) * 100:.0f}% | {split['hops']:.1f} |")
    emit()
    prefix = os.path.join(ROOT, "bench", "results", f"{started:%Y-%m-%d}-{platform.node()}-gateway")
    for png in plot(results, workers, prefix):
        emit(f"![{os.path.basename(png)}]({os.path.basename(png)})")
    with open(prefix + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"\nwritten to {os.path.relpath(prefix + '.md', ROOT)}")


if __name__ == "__main__":
    main()
