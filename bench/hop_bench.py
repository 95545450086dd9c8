#!/usr/bin/env python3
# Run: python3 bench/hop_bench.py [--duration 5] [--workers 1,5,10,50] [--rounds 3] [--no-pin]
#        [--sizes 1024,16384,65536,262144,1048576] [--no-build]
"""The hop path under keep-alive-free load, measured against nginx in the same run.

Topologies, each driven by hey -disable-keepalive at every worker count:
  chain4  four dyninka-host processes of the fixture table; every request makes all four hops:
          POST get  (Dyninka-Route: map().scale(by: 1.0).movingAvg())
  chain4n the same chain with its peers given by name (localhost:PORT, as Kubernetes manifests
          give them as DNS names): the host resolves a name once per --name-ttl, not per hop
  chain4-old  with --old DIR: chain4 on an older build, for an A/B in the same run
  chain4k the same chain with an app key (--app-key-file): the client's request to get is
          unsigned (its route allowed there with --allow-route), and each of the 3 hops after it
          is signed (HMAC-SHA256, OpenSSL) by its caller and checked by its callee; the
          difference to chain4 is the cost of routes only the app may write
  chain4t the same chain recording every hop's span: each host exports OTLP/JSON to a file
          (--otlp-file) and the client sends a sampled traceparent, so all four hops record; the
          difference to chain4 is the cost of tracing (chain4 itself continues traceparent but
          records nothing)
  echo1   one dyninka-host running `echo` (RawJSON in, RawJSON out, no hop)
  nginx4  nginx, the no-processing reference: three proxy_pass hops (upstream HTTP/1.0) and a
          fourth server returning a fixed JSON body, in one nginx with a worker per CPU
  nginx4x1  the same chain as four one-worker nginx processes, one per hop like chain4
  nginx4x1d nginx4x1 listening with `deferred` (TCP_DEFER_ACCEPT), the accept tuning the hosts
          use; teardown differs and cannot be matched: nginx closes its upstream connections with
          FIN, a host's hop with RST

hey runs pinned to CPU 0 and the servers to the other CPUs (--no-pin: no pinning); the
topologies are interleaved in --rounds rounds and each row is the median round.

For each run: requests/s, mean / p99 latency, errors (connection errors and non-2xx), and the CPU
time per request of every server process (utime+stime from /proc, which the load generator does
not distort). Then a payload-size sweep: hopA -> hopB -> blob returns a SIZE-byte body that hopB
and hopA relay back; it reports CPU and heap allocations per request per host (allocations
counted by bench/copy_count.c through LD_PRELOAD), showing that relaying does not grow with size.

Results go to bench/results/DATE-HOST-hops.md. Nothing here runs in the test suite.
"""
import argparse
import datetime
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")

# CPU pinning. hey burns up to a core at high rates; on a small machine it would otherwise take CPU
# from the servers it measures, differently for each topology. With pinning (the default when there
# are at least 2 CPUs) hey runs on CPU 0 and every server process on the other CPUs, as if the load
# came from another machine. --no-pin turns it off.
PIN = {"on": (os.cpu_count() or 1) >= 2}


def client_cpus():
    return {0}


def server_cpus():
    return set(range(1, os.cpu_count() or 1))


def pin_servers():
    """preexec_fn for server processes (their children inherit the affinity)."""
    if PIN["on"]:
        os.sched_setaffinity(0, server_cpus())


def pinning_note():
    if PIN["on"]:
        cpus = sorted(server_cpus())
        return (f"hey pinned to CPU 0, every server process to CPU{'s' if len(cpus) > 1 else ''} "
                f"{','.join(map(str, cpus))} (taskset / sched_setaffinity)")
    return "hey shares the CPUs with the servers (no pinning)"


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, cwd=ROOT, **kw)


def build():
    sh("scripts/bootstrap --with-bench")
    for product in ("dyninka-host", "DyninkaFixture"):
        sh(f"swift build -c release --product {product} >/dev/null")
    bin_dir = subprocess.run("swift build -c release --show-bin-path", shell=True, cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
    return bin_dir, build_counter()


def build_counter():
    """bench/copy_count.c as an LD_PRELOAD library (allocations and bytes copied, by size)."""
    lib = os.path.join(tempfile.gettempdir(), "dyninka-bench-copy_count.so")
    sh(f"gcc -O2 -shared -fPIC -o {lib} bench/copy_count.c -ldl")
    return lib


def cpu_seconds(pid, user_only=False):
    """utime+stime (or utime alone) of a process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + (0 if user_only else int(fields[12]))) / TICK
    except FileNotFoundError:
        return 0.0


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def wait_http(port, path="/healthz", timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"nothing answers on 127.0.0.1:{port}{path}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hosts:
    """dyninka-host processes for some services of the fixture table."""

    def __init__(self, bin_dir, services, preload=None, tmp=None, peer_host="127.0.0.1", extra=(), own=None):
        self.ports = {s: free_port() for s in services}
        peers = ",".join(f"{s}={peer_host}:{p}" for s, p in self.ports.items())
        self.procs = {}
        for s, port in self.ports.items():
            env = dict(os.environ)
            if preload:
                env["LD_PRELOAD"] = preload
                env["COPY_COUNT_FILE"] = os.path.join(tmp, f"{s}.counts")
            self.procs[s] = subprocess.Popen(
                [os.path.join(bin_dir, "dyninka-host"), "serve", "--app", os.path.join(bin_dir, "libDyninkaFixture.so"),
                 "--service", s, "--port", str(port), "--peers", peers, "--log-level", "error", *extra, *((own or {}).get(s, ()))],
                env=env, stdout=subprocess.DEVNULL, preexec_fn=pin_servers)
        for port in self.ports.values():
            wait_http(port)
        self.tmp = tmp

    def cpu(self):
        return {s: cpu_seconds(p.pid) for s, p in self.procs.items()}

    def user_by_thread(self):
        """User CPU seconds of the span exporter threads ("dyninka-spans") and of all the others."""
        spans = other = 0.0
        for pid in [p.pid for p in self.procs.values()]:
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{tid}/stat") as f:
                        stat = f.read()
                except OSError:
                    continue
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                user = int(stat[stat.rindex(")") + 2:].split()[11]) / TICK
                if name == "dyninka-spans":
                    spans += user
                else:
                    other += user
        return spans, other

    def user(self):
        return sum(cpu_seconds(p.pid, True) for p in self.procs.values())

    def counters(self):
        """What bench/copy_count.c counted in each process so far: {service: {name: value}}."""
        counts = {}
        for s, p in self.procs.items():
            path = os.path.join(self.tmp, f"{s}.counts")
            if os.path.exists(path):
                os.remove(path)
            p.send_signal(signal.SIGUSR2)
            for _ in range(100):
                if os.path.exists(path) and os.path.getsize(path) > 0:
                    break
                time.sleep(0.01)
            with open(path) as f:
                counts[s] = {k: int(v) for k, v in (line.split() for line in f if line.strip())}
        return counts

    def allocations(self):
        return {s: c["allocations"] for s, c in self.counters().items()}

    def stop(self):
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


class Nginx:
    """A 4-hop nginx proxy chain. `separate=False`: one nginx with a worker per CPU serving all four
    servers (a request may stay in one process through every hop). `separate=True`: four nginx
    instances with one worker each, one process per hop like the dyninka chain."""

    def __init__(self, tmp, hops=4, separate=False, deferred=False):
        self.ports = [free_port() for _ in range(hops)]
        # `deferred`: listen with TCP_DEFER_ACCEPT, as the hosts do (nginx4x1d).
        listen = " deferred" if deferred else ""
        # The configuration comes from configs/nginx (templates filled in here).
        def template(name):
            with open(os.path.join(ROOT, "configs", "nginx", name)) as f:
                return f.read()
        hop, last, chain = template("hop.conf"), template("last-hop.conf"), template("proxy-chain.conf")
        servers = [hop.format(port=a, next=b, listen=listen).rstrip("\n") for a, b in zip(self.ports, self.ports[1:])]
        servers.append(last.format(port=self.ports[-1], listen=listen).rstrip("\n"))
        groups = [[s] for s in servers] if separate else [servers]
        self.procs = []
        for i, group in enumerate(groups):
            d = os.path.join(tmp, f"nginx{i}{'s' if separate else ''}{'d' if deferred else ''}")
            os.makedirs(d, exist_ok=True)
            conf = os.path.join(d, "nginx.conf")
            workers = 1 if separate else os.cpu_count()
            with open(conf, "w") as f:
                f.write(chain.format(workers=workers, dir=d, servers="\n".join(group)))
            self.procs.append(subprocess.Popen(["nginx", "-p", d, "-c", conf], stdout=subprocess.DEVNULL,
                                               stderr=subprocess.PIPE, preexec_fn=pin_servers))
        for port in self.ports:
            wait_http(port, "/")

    def pids(self):
        return [p for proc in self.procs for p in [proc.pid] + children(proc.pid)]

    def cpu(self):
        return {"nginx": sum(cpu_seconds(p) for p in self.pids())}

    def user(self):
        return sum(cpu_seconds(p, True) for p in self.pids())

    def stop(self):
        for proc in self.procs:
            proc.send_signal(signal.SIGQUIT)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


class HeyFailed(RuntimeError):
    """hey did not run (missing, bad arguments, or no report): the bench stops, naming why."""


def hey(url, workers, duration=None, count=None, headers=(), body="{}", prefix=(), timeout=None):
    """hey with keep-alive off; `prefix` runs it through a wrapper (a test bed node's namespace)."""
    cmd = list(prefix) + (["taskset", "-c", ",".join(map(str, sorted(client_cpus())))] if PIN["on"] else []) + ["hey", "-c", str(workers), "-disable-keepalive", "-m", "POST", "-T", "application/json", "-d", body]
    if timeout:
        cmd += ["-t", str(timeout)]
    cmd += ["-z", f"{duration}s"] if duration else ["-n", str(count)]
    for h in headers:
        cmd += ["-H", h]
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ran = subprocess.run(cmd + [url], capture_output=True, text=True)
    out = ran.stdout
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # A load run that did not run is a failure, never a row of zeros that a check could pass.
    if ran.returncode != 0 or "Requests/sec:" not in out:
        raise HeyFailed(f"hey exited with status {ran.returncode} against {url} and reported no run: "
                        f"{(ran.stderr or out).strip()[-400:]}")
    hey_cpu = usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime
    result = parse_hey(out)
    result["hey_us"] = hey_cpu / max(result["ok"] + result["errors"], 1) * 1e6
    return result


def parse_hey(out):
    """What a hey report says: rate, latencies, responses by status, and errors (statuses other
    than 2xx plus connections that got no answer)."""
    def num(pattern, default=0.0):
        m = re.search(pattern, out)
        return float(m.group(1)) if m else default
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    conn_errors = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s+\S+", out.split("Error distribution:")[1], re.M)) \
        if "Error distribution:" in out else 0
    ok = sum(n for c, n in codes.items() if 200 <= c < 300)
    return {
        "rps": num(r"Requests/sec:\s+([\d.]+)"), "mean_ms": num(r"Average:\s+([\d.]+) secs") * 1000,
        "p50_ms": num(r"50%+ in ([\d.]+) secs") * 1000, "p99_ms": num(r"99%+ in ([\d.]+) secs") * 1000,
        "ok": ok, "errors": conn_errors + sum(n for c, n in codes.items() if not 200 <= c < 300),
        "conn_errors": conn_errors, "codes": codes, "raw": out,
    }


def measure(target, url, workers, duration, headers=(), body="{}"):
    before, user_before = target.cpu(), target.user()
    result = hey(url, workers, duration=duration, headers=headers, body=body)
    after, user_after = target.cpu(), target.user()
    done = max(result["ok"] + result["errors"], 1)
    result["cpu_us"] = {k: (after[k] - before[k]) / done * 1e6 for k in after}
    result["user_us"] = (user_after - user_before) / done * 1e6
    return result


def median_run(runs):
    """The run with the median throughput, its error count replaced by the sum over all runs."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["errors"] = sum(r["errors"] for r in runs)
    chosen["all_rps"] = [r["rps"] for r in runs]
    return chosen


def pyplot():
    """matplotlib.pyplot without a display (installed from PyPI when missing), or None."""
    for attempt in range(2):
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            return plt
        except ImportError:
            if attempt == 0:
                subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"], check=False)
    return None


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except Exception:
        pass
    return f"{platform.node()}, {os.cpu_count()} cores ({model}), Linux {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=5, help="seconds per load run (default 5)")
    ap.add_argument("--workers", default="1,5,10,50", help="hey worker counts (default 1,5,10,50)")
    ap.add_argument("--sizes", default="1024,16384,65536,262144,1048576", help="response sizes for the sweep")
    ap.add_argument("--sweep-requests", type=int, default=2000, help="requests per size in the sweep")
    ap.add_argument("--no-build", action="store_true", help="use the existing release build")
    ap.add_argument("--no-pin", action="store_true", help="let hey share the CPUs with the servers")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per worker count; rows show the median (default 3)")
    ap.add_argument("--only", default="chain4,chain4k,chain4n,chain4t,nginx4,nginx4x1,nginx4x1d,echo1", help="topologies to run (default all)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the payload-size sweep")
    ap.add_argument("--old", help="folder with an older release dyninka-host and libDyninkaFixture.so: adds chain4-old, "
                    "the same chain on that build, interleaved with the others (an A/B in one run)")
    args = ap.parse_args()
    only = set(args.only.split(",")) | ({"chain4-old"} if args.old else set())
    PIN["on"] = PIN["on"] and not args.no_pin
    for tool in ("hey", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is missing: run scripts/bootstrap --with-bench")
    os.environ["PATH"] += ":/usr/sbin"
    bin_dir, counter = build() if not args.no_build else (
        subprocess.run("swift build -c release --show-bin-path", shell=True, cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        build_counter())
    workers = [int(w) for w in args.workers.split(",")]
    tmp = tempfile.mkdtemp(prefix="dyninka-bench-")
    started = datetime.datetime.now(datetime.timezone.utc)
    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)

    emit(f"# Hop path benchmark, {started:%Y-%m-%d %H:%M} UTC")
    emit()
    emit(f"Machine: {machine()}. Command: `python3 bench/hop_bench.py --duration {args.duration:g} "
         f"--workers {args.workers} --sizes {args.sizes} --rounds {args.rounds} --only {args.only}"
         f"{' --no-sweep' if args.no_sweep else ''}{' --old ' + args.old if args.old else ''}`. Load: hey -disable-keepalive, POST, "
         f"{args.duration:g} s per run, {args.rounds} interleaved rounds per worker count, each row the median round "
         f"(errors summed over all rounds); {pinning_note()}. CPU per request is "
         f"utime+stime of each server process from /proc divided by the requests answered; hey's own CPU per "
         f"request is shown apart. nginx4: one nginx, a worker per CPU, serving all four hops; nginx4x1: four "
         f"nginx processes with one worker each, one per hop like the dyninka chain; nginx4x1d: nginx4x1 listening with "
         f"`deferred` (TCP_DEFER_ACCEPT) like the hosts.")
    emit()
    emit("## Throughput and latency")
    emit()
    emit("| topology | workers | req/s | mean ms | p99 ms | errors | server CPU us/req (per process) | total us/req | us/hop | user us/hop | kernel us/hop | hey us/req |")
    emit("|---|---|---|---|---|---|---|---|---|---|---|---|")
    results = {}
    chain = Hosts(bin_dir, ["get", "map", "scale", "movingAvg"], tmp=tmp)
    named = Hosts(bin_dir, ["get", "map", "scale", "movingAvg"], tmp=tmp, peer_host="localhost")
    echo = Hosts(bin_dir, ["echo"], tmp=tmp)
    old = Hosts(args.old, ["get", "map", "scale", "movingAvg"], tmp=tmp) if args.old else None
    key_file = os.path.join(tmp, "app.key")
    with open(key_file, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    keyed = Hosts(bin_dir, ["get", "map", "scale", "movingAvg"], tmp=tmp, extra=("--app-key-file", key_file),
                  own={"get": ("--allow-route", "map().scale(by: 1.0).movingAvg()")}) if "chain4k" in only else None
    spans = os.path.join(tmp, "spans.jsonl")
    traced = Hosts(bin_dir, ["get", "map", "scale", "movingAvg"], tmp=tmp, extra=("--otlp-file", spans)) if "chain4t" in only else None
    sampled = ("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",)
    exported = {}
    split = {}
    nginx = Nginx(tmp)
    nginx_x1 = Nginx(tmp, separate=True)
    nginx_x1d = Nginx(tmp, separate=True, deferred=True) if "nginx4x1d" in only else None
    route = ("Dyninka-Route: map().scale(by: 1.0).movingAvg()",)
    try:
        for w in workers:
            runs = [
                ("chain4", chain, f"http://127.0.0.1:{chain.ports['get']}/", route, "{}", 4),
                ("chain4n", named, f"http://127.0.0.1:{named.ports['get']}/", route, "{}", 4),
                ("chain4k", keyed, f"http://127.0.0.1:{keyed.ports['get']}/" if keyed else "", route, "{}", 4),
                ("chain4-old", old, f"http://127.0.0.1:{old.ports['get']}/" if old else "", route, "{}", 4),
                ("chain4t", traced, f"http://127.0.0.1:{traced.ports['get']}/" if traced else "", route + sampled, "{}", 4),
                ("nginx4", nginx, f"http://127.0.0.1:{nginx.ports[0]}/", (), "{}", 4),
                ("nginx4x1", nginx_x1, f"http://127.0.0.1:{nginx_x1.ports[0]}/", (), "{}", 4),
                ("nginx4x1d", nginx_x1d, f"http://127.0.0.1:{nginx_x1d.ports[0]}/" if nginx_x1d else "", (), "{}", 4),
                ("echo1", echo, f"http://127.0.0.1:{echo.ports['echo']}/", ("Dyninka-Route: ",), '{"value":1}', 1),
            ]
            runs = [run for run in runs if run[0] in only]
            # Rounds interleave the topologies, so that drift on the machine (other load, the
            # TIME_WAIT table filling up) affects all alike; each row is the median round.
            rounds = {name: [] for name, *_ in runs}
            for round_ in range(args.rounds):
                for name, target, url, headers, body, hops in runs:
                    print(f"... {name}, {w} workers, round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
                    if name == "chain4t" and os.path.exists(spans):
                        os.truncate(spans, 0)
                    threads0 = traced.user_by_thread() if name == "chain4t" else None
                    rounds[name].append(measure(target, url, w, args.duration, headers, body))
                    time.sleep(1)
                    if name == "chain4t":
                        threads1 = traced.user_by_thread()
                        n = max(rounds[name][-1]["ok"], 1) * 4
                        split.setdefault(w, []).append(((threads1[1] - threads0[1]) / n * 1e6, (threads1[0] - threads0[0]) / n * 1e6))
                        # Spans exported per answered request (4 when every hop recorded and exported).
                        with open(spans, "rb") as f:
                            count = f.read().count(b'"spanId"')
                        r = rounds[name][-1]
                        exported.setdefault(w, []).append(count / max(r["ok"], 1))
            for name, target, url, headers, body, hops in runs:
                r = median_run(rounds[name])
                results[(name, w)] = r
                total = sum(r["cpu_us"].values())
                per = ", ".join(f"{k} {v:.0f}" for k, v in r["cpu_us"].items())
                emit(f"| {name} | {w} | {r['rps']:.0f} | {r['mean_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {per} | "
                     f"{total:.0f} | {total / hops:.1f} | {r['user_us'] / hops:.1f} | {(total - r['user_us']) / hops:.1f} | "
                     f"{r['hey_us']:.0f} |")
                if r["errors"]:
                    print(r["raw"][-800:], file=sys.stderr)
    finally:
        chain.stop()
        named.stop()
        echo.stop()
        if old:
            old.stop()
        if keyed:
            keyed.stop()
        if traced:
            traced.stop()
        nginx.stop()
        nginx_x1.stop()
        if nginx_x1d:
            nginx_x1d.stop()
    emit()
    for w, counts in sorted(exported.items()):
        emit(f"chain4t, {w} workers: spans in the OTLP file per request answered, by round: " + ", ".join(f"{c:.2f}" for c in counts))
    for w, rows in sorted(split.items()):
        emit(f"chain4t, {w} workers: user us/hop on the loop threads (the hop path) / on the span exporter threads, by round: "
             + ", ".join(f"{a:.1f} / {b:.1f}" for a, b in rows))
    if exported:
        emit()
    for w in workers:
        if "chain4k" in only and "chain4" in only:
            a, b = results[("chain4", w)], results[("chain4k", w)]
            emit(f"chain4k, {w} workers: app key cost {(sum(b['cpu_us'].values()) - sum(a['cpu_us'].values())) / 3:.2f} us of CPU per signed hop "
                 f"(user {(b['user_us'] - a['user_us']) / 3:.2f} us), from the median rounds")
    for ref in ("nginx4", "nginx4x1", "nginx4x1d", "chain4n", "chain4-old", "chain4k", "chain4t"):
        if ref in only and "chain4" in only:
            emit(f"Ratio chain4 / {ref} throughput: " + ", ".join(
                f"{w} workers {results[('chain4', w)]['rps'] / max(results[(ref, w)]['rps'], 1):.2f}x" for w in workers))
    emit()
    shown = [t for t in ("chain4", "chain4k", "chain4n", "chain4-old", "chain4t", "nginx4", "nginx4x1", "nginx4x1d") if t in only]
    emit(f"Requests/s of every round ({' | '.join(shown)}): " + "; ".join(
        f"{w} workers " + " | ".join(" ".join(f"{x:.0f}" for x in results[(t, w)]["all_rps"]) for t in shown)
        for w in workers))
    emit()
    if args.no_sweep:
        return finish(lines, started, tmp)
    emit("## Payload sweep: hopA -> hopB -> blob, the SIZE-byte response relayed back through hopB and hopA")
    emit()
    emit(f"Up to {args.sweep_requests} requests per size (at most 128 MiB relayed per size), hey -c 10 -disable-keepalive. "
         "Allocations: malloc-family calls per request, counted in each process.")
    emit()
    emit("| size | req/s | errors | CPU us/req hopA / hopB / blob | allocations/req hopA / hopB / blob |")
    emit("|---|---|---|---|---|")
    sweep = Hosts(bin_dir, ["hopA", "hopB", "blob"], preload=counter, tmp=tmp)
    try:
        url = f"http://127.0.0.1:{sweep.ports['hopA']}/"
        for size in [int(s) for s in args.sizes.split(",")]:
            body = f'{{"size":{size}}}'
            hey(url, 4, count=200, body=body)
            a0, c0 = sweep.allocations(), sweep.cpu()
            r = hey(url, 10, count=max(100, min(args.sweep_requests, (128 << 20) // size)), body=body)
            a1, c1 = sweep.allocations(), sweep.cpu()
            n = max(r["ok"] + r["errors"], 1)
            cpu = " / ".join(f"{(c1[s] - c0[s]) / n * 1e6:.0f}" for s in ("hopA", "hopB", "blob"))
            allocs = " / ".join(f"{(a1[s] - a0[s]) / n:.1f}" for s in ("hopA", "hopB", "blob"))
            emit(f"| {size} | {r['rps']:.0f} | {r['errors']} | {cpu} | {allocs} |")
    finally:
        sweep.stop()
    finish(lines, started, tmp)


def write_results(lines, started, name, out=None, echo=False):
    """Writes a results file (bench/results/DATE-HOST-NAME.md unless `out`), printing its lines
    first when `echo`; returns its path."""
    path = out or os.path.join(ROOT, "bench", "results", f"{started:%Y-%m-%d}-{platform.node()}-{name}.md")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    if echo:
        print("\n".join(lines))
    print(f"wrote {path}", file=sys.stderr)
    return path


def finish(lines, started, tmp):
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    path = os.path.join(ROOT, "bench", "results", f"{started:%Y-%m-%d}-{platform.node()}-hops.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"\nwritten to {os.path.relpath(path, ROOT)}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
