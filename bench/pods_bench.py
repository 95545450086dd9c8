#!/usr/bin/env python3
# Run (root): DYNINKA_K8S_KIT=../shared/k8s python3 bench/pods_bench.py [--duration 5] [--workers 1,10,50]
#             [--rounds 2] [--profiles lan,wan,lossy] [--soak 180] [--soak-workers 10]
"""The fog table on real pods beside plain processes: the smart building point to point on the
same fog test bed (configs/testbed/fog.json, `dyninka testbed up --kubernetes`), once as
dyninka-host processes in the nodes' namespaces (`dyninka run --testbed`) and once as containers
in real pods (`dyninka deploy --apply`, pinned to the nodes the processes got, the sensor a
sidecar in get's pod), both up at once, measured in interleaved rounds.

Per profile, topology and worker count: throughput, latency, errors, and CPU per request: the
app's hosts (their processes' utime + stime), the sensor, hey, and the whole machine (/proc/stat,
all cores), whose remainder is what neither the app nor the client spends: the kernel's
connection work, kube-proxy's DNAT and conntrack for the pods, the link emulator, the daemons.
Requests to the pods go to the entry's ClusterIP from the bed's `client` node (resolved once, so
DNS is not in the loop), through the client node's kube-proxy, as a pod's hop to the next service
goes through its node's kube-proxy; the processes' entry is the address `dyninka run` printed.

Then a soak: keep-alive-free load through the pods for --soak seconds, sampling every node's
conntrack table (each hop is a new connection, and each closed one stays in the table for the
TIME_WAIT timeout). Writes bench/results/DATE-HOST-pods.md. Nothing here runs in the tests.
"""
import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hop_bench  # noqa: E402
from testbed_bench import APP, BED, CLIENT, BedApp, bed_tools, set_profile  # noqa: E402

ROOT = hop_bench.ROOT
NAMESPACE = "bench"
TICK = os.sysconf("SC_CLK_TCK")
NODES = ["cloud", "edge-1", "edge-2", "client"]


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def in_pod(pid):
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return ":/dyninka-k8s-" in f.read()
    except OSError:
        return False


def app_processes():
    """pid -> (topology, role): the hosts and sensors of both topologies."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        line = cmdline(entry)
        role = "host" if "dyninka-host" in line and "serve" in line else "sensor" if "sensor.py" in line else None
        if role:
            found[int(entry)] = ("pods" if in_pod(entry) else "processes", role)
    return found


def machine_busy():
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICK  # all but idle and iowait


class Usage:
    """CPU seconds spent between start() and stop(), by topology and role, and by the machine."""

    def start(self):
        self.procs = app_processes()
        self.before = {pid: cpu_seconds(pid) for pid in self.procs}
        self.machine = machine_busy()

    def stop(self, topology, requests):
        per = {"host": 0.0, "sensor": 0.0}
        for pid, (top, role) in self.procs.items():
            if top == topology:
                per[role] += cpu_seconds(pid) - self.before[pid]
        n = max(requests, 1)
        return {"hosts_us": per["host"] / n * 1e6, "sensor_us": per["sensor"] / n * 1e6,
                "machine_us": (machine_busy() - self.machine) / n * 1e6}


def kubectl(kubeconfig, *args):
    home = os.environ.get("DYNINKA_K8S_HOME", os.path.expanduser("~/.cache/dyninka-k8s"))
    return subprocess.run([f"{home}/venv/bin/kubectl", "--kubeconfig", kubeconfig, *args], check=True,
                          capture_output=True, text=True).stdout


def pinned_copy(nodes):
    """The app in a temporary folder with every service pinned to the node its process got
    (`@Service(node:)`), so that pods and processes make the same hops over the same links."""
    folder = tempfile.mkdtemp(prefix="dyninka-pods-bench-")
    source_folder = os.path.dirname(f"{ROOT}/{APP}")
    for name in os.listdir(source_folder):
        if name.startswith("."):
            continue
        src = os.path.join(source_folder, name)
        (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(folder, name))
    path = os.path.join(folder, os.path.basename(APP))
    text = open(path).read()
    for service, node in nodes.items():
        if service == "sensor":
            continue
        text, n = re.subn(r"@Service(\([^)]*\))? (func %s\()" % re.escape(service), f'@Service(node: "{node}") \\2', text)
        if n != 1:
            raise SystemExit(f"cannot pin {service} in {path}")
    open(path, "w").write(text)
    return folder, path


def conntrack(node):
    def read(name):
        out = subprocess.run(["ip", "netns", "exec", f"dynbed-{node}", "cat", f"/proc/sys/net/netfilter/{name}"],
                             capture_output=True, text=True).stdout.strip()
        return int(out) if out.isdigit() else -1
    return read("nf_conntrack_count"), read("nf_conntrack_max"), read("nf_conntrack_tcp_timeout_time_wait")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=5, help="seconds per load run (default 5)")
    ap.add_argument("--workers", default="1,10,50")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; rows show the median (default 2)")
    ap.add_argument("--profiles", default="lan,wan,lossy")
    ap.add_argument("--soak", type=float, default=180, help="seconds of sustained load through the pods (0: none)")
    ap.add_argument("--soak-workers", type=int, default=10)
    ap.add_argument("--kit", default=os.environ.get("DYNINKA_K8S_KIT", os.path.normpath(f"{ROOT}/../shared/k8s")))
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the test bed needs root (network namespaces, iptables, kubelets)")
    dyninka, host = bed_tools(build=not args.no_build)
    workers = [int(w) for w in args.workers.split(",")]
    profiles = args.profiles.split(",")
    hop_bench.PIN["on"] = False
    started = datetime.datetime.now(datetime.timezone.utc)
    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)

    def note(line):
        print(line, file=sys.stderr, flush=True)

    note("... the bed with real Kubernetes nodes (about a minute)")
    up = subprocess.run([dyninka, "testbed", "up", BED, "--kubernetes", "--kit", args.kit], cwd=ROOT, capture_output=True, text=True)
    if up.returncode != 0:
        raise SystemExit(f"testbed up --kubernetes failed: {up.stderr[-2000:]}")
    kubeconfig = up.stdout.strip().splitlines()[-1].split(" ", 1)[1]
    env = dict(os.environ, KUBECONFIG=kubeconfig, MARATHON_URL="", KUBERNETES_SERVICE_HOST="")
    results, soak_rows, placements, folder = {}, [], {}, None
    processes = None
    try:
        # Over all three nodes, so that hops cross the WAN links the profiles change (the paper's
        # table spreads over the edges, where only the gateway's hops cross them).
        processes = BedApp(dyninka, host, gateway=False, spread="cloud,edge-1,edge-2")
        placements = dict(processes.nodes)
        folder, pinned = pinned_copy(processes.nodes)
        note(f"... the same placement in pods: {placements}")
        deployed = subprocess.run([dyninka, "deploy", pinned, "--apply", "--namespace", NAMESPACE], cwd=ROOT, env=env,
                                  capture_output=True, text=True)
        if deployed.returncode != 0:
            raise SystemExit(f"deploy failed: {deployed.stderr[-3000:]}")
        image_lines = [l for l in deployed.stderr.splitlines() if " image " in l and "MB compressed" in l]
        pods = kubectl(kubeconfig, "-n", NAMESPACE, "get", "pods", "-o",
                       "jsonpath={range .items[*]}{.metadata.labels.app\\.kubernetes\\.io/name} {.spec.nodeName}{\"\\n\"}{end}")
        vip = kubectl(kubeconfig, "-n", NAMESPACE, "get", "svc", "smart-building-get", "-o", "jsonpath={.spec.clusterIP}")
        entries = {"processes": processes.entry, "pods": f"http://{vip}:8080/"}
        for _ in range(60):  # the client node's kube-proxy writes the Service's rules just after the rollout
            if subprocess.run(["ip", "netns", "exec", CLIENT, "curl", "-s", "-o", "/dev/null", "-m", "2", entries["pods"] + "healthz"]).returncode == 0:
                break
            time.sleep(0.5)
        usage = Usage()
        for profile in profiles:
            set_profile(dyninka, profile)
            runs = {}
            for round_ in range(args.rounds):
                for w in workers:
                    for topology in ("processes", "pods") if round_ % 2 == 0 else ("pods", "processes"):
                        note(f"... {profile}, {topology}, {w} workers, round {round_ + 1}/{args.rounds}")
                        usage.start()
                        r = hop_bench.hey(entries[topology], w, duration=args.duration, body="", prefix=["ip", "netns", "exec", CLIENT], timeout=30)
                        r.update(usage.stop(topology, r["ok"] + r["errors"]))
                        runs.setdefault((topology, w), []).append(r)
            for key, rs in runs.items():
                r = hop_bench.median_run(rs)
                r["error_rate"] = r["errors"] / max(sum(x["ok"] + x["errors"] for x in rs), 1) * 100
                results[(profile,) + key] = r
        if args.soak > 0:
            set_profile(dyninka, "lan")
            note(f"... soak: {args.soak:g} s through the pods, {args.soak_workers} workers")
            load = subprocess.Popen(["ip", "netns", "exec", CLIENT, "hey", "-c", str(args.soak_workers), "-disable-keepalive",
                                     "-m", "POST", "-t", "30", "-z", f"{args.soak}s", entries["pods"]],
                                    stdout=subprocess.PIPE, text=True)
            t0 = time.time()
            while load.poll() is None:
                soak_rows.append((time.time() - t0, {n: conntrack(n) for n in NODES}))
                time.sleep(10)
            soak = hop_bench.parse_hey(load.stdout.read())
            soak_rows.append((time.time() - t0, {n: conntrack(n) for n in NODES}))
    finally:
        if processes:
            processes.stop()
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        note("... testbed down")
        subprocess.run([dyninka, "testbed", "down"], cwd=ROOT, capture_output=True)

    emit(f"# The fog table on real pods beside processes, {started:%Y-%m-%d %H:%M} UTC")
    emit()
    emit(f"Machine: {hop_bench.machine()}. Command: `sudo DYNINKA_K8S_KIT=../shared/k8s python3 bench/pods_bench.py "
         f"--duration {args.duration:g} --workers {args.workers} --rounds {args.rounds} --profiles {args.profiles} "
         f"--soak {args.soak:g} --soak-workers {args.soak_workers}`. Bed: `{BED}` with `--kubernetes` (every node a real "
         "kubelet node in its namespace). Both topologies run point to point at once; per worker count the two are "
         f"measured back to back, in alternating order, {args.rounds} rounds, each row the median round, errors summed. "
         "hey runs in the bed's `client` node, keep-alive off. Profiles apply to edge-1 <-> cloud, edge-2 <-> cloud and "
         "client <-> cloud (one-way delay); the services spread over cloud and both edges (`--spread cloud,edge-1,edge-2`), "
         "so hops cross those links. Every request makes the full dataflow get -> filterTemperature -> map -> "
         "movingAvg (two thirds of the rows dropped at filterTemperature with 204, so a request makes 1.7 hops on average "
         "after the entry, each a new TCP connection).")
    emit()
    emit("Placement (both topologies): " + ", ".join(f"{k} on {v}" for k, v in placements.items()))
    emit()
    emit("Pods as the cluster placed them: " + ", ".join(" on ".join(l.split()) for l in pods.splitlines()))
    emit()
    for line in image_lines:
        emit(f"- {line.replace('dyninka: ', '')}")
    emit()
    emit("## Throughput, latency, errors, CPU per request")
    emit()
    emit("CPU per request in µs: the app's hosts, the sensor, hey (the client), and the machine (all cores busy, "
         "everything: the rest is the kernel's connection work, NAT and conntrack, the link emulator and the daemons).")
    emit()
    emit("| profile | topology | workers | req/s | mean ms | p99 ms | errors | hosts µs | sensor µs | hey µs | machine µs | machine - hosts - sensor - hey µs |")
    emit("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for profile in profiles:
        for w in workers:
            for topology in ("processes", "pods"):
                r = results[(profile, topology, w)]
                rest = r["machine_us"] - r["hosts_us"] - r["sensor_us"] - r["hey_us"]
                emit(f"| {profile} | {topology} | {w} | {r['rps']:.0f} | {r['mean_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
                     f"{r['hosts_us']:.0f} | {r['sensor_us']:.0f} | {r['hey_us']:.0f} | {r['machine_us']:.0f} | {rest:.0f} |")
    emit()
    emit("| profile | workers | pods / processes throughput | pods / processes mean latency | pods - processes hosts µs | pods - processes machine µs |")
    emit("|---|---|---|---|---|---|")
    for profile in profiles:
        for w in workers:
            p, q = results[(profile, "pods", w)], results[(profile, "processes", w)]
            emit(f"| {profile} | {w} | {p['rps'] / max(q['rps'], 1e-9):.2f}x | {p['mean_ms'] / max(q['mean_ms'], 1e-9):.2f}x | "
                 f"{p['hosts_us'] - q['hosts_us']:+.0f} | {p['machine_us'] - q['machine_us']:+.0f} |")
    emit()
    if soak_rows:
        emit(f"## Conntrack under a soak ({args.soak:g} s, {args.soak_workers} workers, LAN, through the pods)")
        emit()
        emit(f"{soak['rps']:.0f} req/s; responses {soak['codes']}; connection errors {soak['conn_errors']}. Entries in each node's "
             "conntrack table (count / max; TIME_WAIT timeout in s), every 10 s:")
        emit()
        emit("| s | " + " | ".join(NODES) + " |")
        emit("|---|" + "---|" * len(NODES))
        for t, row in soak_rows:
            emit(f"| {t:.0f} | " + " | ".join(f"{c} / {m} ({tw} s)" for c, m, tw in (row[n] for n in NODES)) + " |")
        emit()
    os.makedirs(f"{ROOT}/bench/results", exist_ok=True)
    out = f"{ROOT}/bench/results/{started:%Y-%m-%d}-{os.uname().nodename.split('.')[0]}-pods.md"
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    note(f"wrote {out}")


if __name__ == "__main__":
    main()
