#!/usr/bin/env python3
# Run: python3 bench/fusion_bench.py [--duration 5] [--workers 1,10,50] [--rounds 3] [--no-pin] [--no-build]
"""Fusion: the same chains fused in one host vs point to point vs gateway mode, in one run.

Topologies, each driven by hey -disable-keepalive at every worker count, interleaved round by round:
  chain4-p2p    four dyninka-host processes of the fixture table; every request makes all four
                steps, three of them hops: POST get (Dyninka-Route: map().scale(by: 1.0).movingAvg())
  chain4-fused  one dyninka-host serving get,map,scale,movingAvg (--service get,map,scale,movingAvg):
                the same request, the same four steps, no hop (typed values between the stages)
  sb-p2p        the smart-building app by `dyninka run` (a host per service, the sensor sidecar)
  sb-fused      the same by `dyninka run --fuse auto` (one host for the four services)
  sb-gateway    the same by `dyninka run --gateway` (function instances, orchestrator, gateway)

hey runs pinned to CPU 0 and the servers to the other CPUs (--no-pin: no pinning). For each run:
requests/s, mean / p99 latency, errors, and the CPU time per request of the servers (utime+stime
of every host process from /proc; the sensor sidecar apart), which the load generator cannot
distort. hey's own CPU per request is reported too: it bounds what one client core can drive.
Each answer is checked: the fused chain must give the point-to-point chain's answers (same
statuses, same body shape) before any load runs.

With --testbed (root), the mixed case instead: the smart-building app on the fog test bed spread
over edge-1 and cloud with the WAN profile (20 ± 5 ms one way between them), point to point vs
`--fuse auto` (two fused groups, one per node, one hop over the link between them), hey in the
bed's client node.

Results go to bench/results/DATE-HOST-fusion.md (-testbed-fusion.md). Nothing here runs in the
test suite.
"""
import argparse
import datetime
import http.client
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway_bench  # noqa: E402  (dyninka run topologies of the smart-building app)
import hop_bench  # noqa: E402  (hey, /proc readings, pinning)

ROOT = hop_bench.ROOT
CHAIN = ["get", "map", "scale", "movingAvg"]
ROUTE = "map().scale(by: 1.0).movingAvg()"


class FusedHost:
    """One dyninka-host serving several services of the fixture table."""

    def __init__(self, bin_dir, services):
        self.port = hop_bench.free_port()
        self.proc = subprocess.Popen(
            [os.path.join(bin_dir, "dyninka-host"), "serve", "--app", os.path.join(bin_dir, "libDyninkaFixture.so"),
             "--service", ",".join(services), "--port", str(self.port), "--log-level", "error"],
            stdout=subprocess.DEVNULL, preexec_fn=hop_bench.pin_servers)
        hop_bench.wait_http(self.port)

    def cpu(self):
        return {"fused": hop_bench.cpu_seconds(self.proc.pid)}

    def user(self):
        return hop_bench.cpu_seconds(self.proc.pid, True)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def post(port, path, headers):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", path, body=b"{}", headers={"Connection": "close", **headers})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def servers_cpu(result):
    """CPU us per request of the hosts (the sensor sidecar and hey apart)."""
    return sum(v for k, v in result["cpu_us"].items() if k != "sensor")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=5, help="seconds per load run (default 5)")
    ap.add_argument("--workers", default="1,10,50", help="hey worker counts (default 1,10,50)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per worker count; rows show the median (default 3)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-pin", action="store_true", help="let hey share the CPUs with the servers")
    ap.add_argument("--skip-app", action="store_true", help="only the fixture chain (no dyninka run of the smart-building app)")
    ap.add_argument("--out", help="results file (default bench/results/DATE-HOST-fusion.md)")
    ap.add_argument("--testbed", action="store_true", help="the mixed case on the fog test bed instead (root)")
    args = ap.parse_args()
    if args.testbed:
        return mixed(args)
    hop_bench.PIN["on"] = hop_bench.PIN["on"] and not args.no_pin
    os.environ["PATH"] += ":/usr/sbin"
    if not args.no_build:
        hop_bench.sh("scripts/bootstrap --with-bench")
        hop_bench.sh("swift build -c release --product dyninka-host >/dev/null")
        hop_bench.sh("swift build -c release --product DyninkaFixture >/dev/null")
        hop_bench.sh("swift build --product dyninka >/dev/null")
    release = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    debug = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    workers = [int(w) for w in args.workers.split(",")]
    started = datetime.datetime.now(datetime.timezone.utc)
    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)

    targets = []
    stoppers = []
    try:
        p2p = hop_bench.Hosts(release, CHAIN)
        stoppers.append(p2p)
        fused = FusedHost(release, CHAIN)
        stoppers.append(fused)
        header = (f"Dyninka-Route: {ROUTE}",)
        targets += [("chain4-p2p", p2p, f"http://127.0.0.1:{p2p.ports['get']}/", header),
                    ("chain4-fused", fused, f"http://127.0.0.1:{fused.port}/", header)]
        # The same answers first: a fused chain that answered differently would measure nothing.
        for _ in range(3):
            a = post(p2p.ports["get"], "/", {"Dyninka-Route": ROUTE})
            b = post(fused.port, "/", {"Dyninka-Route": ROUTE})
            shape = lambda body: sorted(json.loads(body).keys()) if body else []  # noqa: E731
            if a[0] != 200 or b[0] != 200 or shape(a[1]) != shape(b[1]):
                raise SystemExit(f"the fused chain answers {b} where point to point answers {a}")
        if not args.skip_app:
            for name, gateway, fuse in (("sb-p2p", False, False), ("sb-fused", False, True), ("sb-gateway", True, False)):
                topo = gateway_bench.Topology(debug, release, gateway, extra=("--fuse", "auto") if fuse else ())
                stoppers.append(topo)
                targets.append((name, topo, f"http://127.0.0.1:{topo.port}{topo.path}", ()))
        results = {}
        for w in workers:
            rounds = {name: [] for name, *_ in targets}
            for round_ in range(args.rounds):
                for name, target, url, headers in targets:
                    print(f"... {name}, {w} workers, {args.duration:g} s, round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
                    rounds[name].append(hop_bench.measure(target, url, w, args.duration, headers=headers,
                                                          body="{}" if name.startswith("chain4") else ""))
                    time.sleep(1)
            for name in rounds:
                results[(name, w)] = hop_bench.median_run(rounds[name])
    finally:
        for s in stoppers:
            s.stop()

    emit(f"# Fusion: fused vs point to point vs gateway, {started:%Y-%m-%d %H:%M} UTC")
    emit()
    emit(f"Machine: {hop_bench.machine()}. Command: `python3 bench/fusion_bench.py --duration {args.duration:g} "
         f"--workers {','.join(map(str, workers))} --rounds {args.rounds}{' --skip-app' if args.skip_app else ''}`. "
         f"Load: hey -disable-keepalive ({args.duration:g} s per run, {args.rounds} interleaved rounds per worker count, "
         f"each row the median round, errors summed over all rounds); {hop_bench.pinning_note()}. "
         "Hosts: release dyninka-host. chain4: the fixture table, POST get with "
         f"`Dyninka-Route: {ROUTE}`: four steps per request, three hops point to point, none fused. "
         "sb: the smart-building app by `dyninka run` (release library), every request the full default "
         "dataflow (get reads a sensor row from the sidecar; two rows in three are dropped at filterTemperature: 204). "
         "Servers' CPU: utime+stime of every host process per request (the sensor sidecar apart).")
    emit()
    emit("| topology | workers | req/s | mean ms | p99 ms | errors | servers' CPU us/req | hey us/req |")
    emit("|---|---|---|---|---|---|---|---|")
    for name, *_ in targets:
        for w in workers:
            r = results[(name, w)]
            emit(f"| {name} | {w} | {r['rps']:.0f} | {r['mean_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | "
                 f"{servers_cpu(r):.0f} | {r['hey_us']:.0f} |")
    emit()
    emit("| workers | chain4 fused / p2p CPU per request | chain4 fused / p2p throughput |"
         + ("" if args.skip_app else " sb fused / p2p CPU | sb fused / p2p throughput | sb fused / gateway throughput |"))
    emit("|---|---|---|" + ("" if args.skip_app else "---|---|---|"))
    for w in workers:
        f, p = results[("chain4-fused", w)], results[("chain4-p2p", w)]
        row = f"| {w} | {servers_cpu(f) / max(servers_cpu(p), 1e-9):.2f} | {f['rps'] / max(p['rps'], 1):.2f}x |"
        if not args.skip_app:
            sf, sp, sg = results[("sb-fused", w)], results[("sb-p2p", w)], results[("sb-gateway", w)]
            row += (f" {servers_cpu(sf) / max(servers_cpu(sp), 1e-9):.2f} | {sf['rps'] / max(sp['rps'], 1):.2f}x | "
                    f"{sf['rps'] / max(sg['rps'], 1):.2f}x |")
        emit(row)
    emit()
    emit("Requests/s of every round: " + "; ".join(
        f"{name} {w}w " + " ".join(f"{x:.0f}" for x in results[(name, w)]["all_rps"]) for name, *_ in targets for w in workers))
    emit()
    emit("CPU per request of each process (us): " + "; ".join(
        f"{name} {w}w " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(results[(name, w)]["cpu_us"].items()))
        for name, *_ in targets for w in workers))
    hop_bench.write_results(lines, started, "fusion", out=args.out)


def mixed(args):
    """Two fused groups on two bed nodes over a 20 ms link, against one host per service."""
    import testbed_bench
    if os.geteuid() != 0:
        raise SystemExit("the test bed needs root (network namespaces, iptables)")
    dyninka, host = testbed_bench.bed_tools(build=not args.no_build)
    workers = [int(w) for w in args.workers.split(",")]
    hop_bench.PIN["on"] = False
    started = datetime.datetime.now(datetime.timezone.utc)
    subprocess.run([dyninka, "testbed", "up", testbed_bench.BED], check=True, cwd=ROOT, capture_output=True)
    results, placements, timings = {}, {}, {}
    apps = {}
    try:
        testbed_bench.set_profile(dyninka, "wan")
        probe = subprocess.run([dyninka, "testbed", "probe", "edge-1", "cloud", "--count", "20"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        # One run at a time (two runs on one bed would take the same addresses), the topologies
        # alternating round by round, on the same nodes.
        topologies = {"bed-p2p": (), "bed-fused": ("--fuse", "auto")}
        runs = {}
        for round_ in range(args.rounds):
            for name, extra in topologies.items():
                app = testbed_bench.BedApp(dyninka, host, False, spread="edge-1,cloud", extra=extra)
                apps[name] = app
                try:
                    placements[name] = app.nodes
                    if round_ == 0:
                        timings[name] = testbed_bench.sample(app.entry, 30)
                    for w in workers:
                        print(f"... {name}, {w} workers, round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
                        before = app.cpu()
                        r = hop_bench.hey(app.entry, w, duration=args.duration, body="", prefix=["ip", "netns", "exec", testbed_bench.CLIENT],
                                          timeout=30)
                        after = app.cpu()
                        done = max(r["ok"] + r["errors"], 1)
                        r["cpu_us"] = {k: (after.get(k, 0) - before.get(k, 0)) / done * 1e6 for k in after}
                        runs.setdefault((name, w), []).append(r)
                finally:
                    app.stop()
        for key, rs in runs.items():
            results[key] = hop_bench.median_run(rs)
    finally:
        for app in apps.values():
            app.stop()
        subprocess.run([dyninka, "testbed", "down"], cwd=ROOT, capture_output=True)
    lines = [f"# Fusion on the fog test bed: two fused groups over a 20 ms link, {started:%Y-%m-%d %H:%M} UTC", "",
             f"Machine: {hop_bench.machine()}. Command: `sudo python3 bench/fusion_bench.py --testbed --duration {args.duration:g} "
             f"--workers {args.workers} --rounds {args.rounds}`. Bed `{testbed_bench.BED}`, WAN profile on edge <-> cloud "
             f"and client <-> cloud (20 ± 5 ms one way; probe: {probe}); the smart-building app spread over edge-1 and cloud; "
             "hey -disable-keepalive in the client node; one topology up at a time, alternating round by round, each row the median round.",
             ""]
    for name in apps:
        lines.append(f"- {name}: " + ", ".join(f"{k} on {v}" for k, v in sorted(placements[name].items())))
        t = timings[name]
        lines.append(f"  - {t['n']} sequential requests (200 or 204): mean {t['total']:.1f} ms end to end; mean Server-Timing dur per stage: "
                     + ", ".join(f"{k} {v[0]:.1f} ms ({v[2]}x)" for k, v in t["hops"].items()))
    lines += ["", "| topology | workers | req/s | mean ms | p99 ms | errors | hosts' CPU us/req |", "|---|---|---|---|---|---|---|"]
    for name in apps:
        for w in workers:
            r = results[(name, w)]
            lines.append(f"| {name} | {w} | {r['rps']:.0f} | {r['mean_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {sum(r['cpu_us'].values()):.0f} |")
    hop_bench.write_results(lines, started, "testbed-fusion", out=args.out, echo=True)


if __name__ == "__main__":
    main()
