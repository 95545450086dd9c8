#!/usr/bin/env python3
# Run: python3 bench/relay_bench.py [--old DIR] [--sizes 1024,65536,1048576,8388608] [--rounds 3] [--no-build]
"""The relay path with large bodies: bytes copied, memory held, CPU per relayed MiB.

Three measurements, each with the current release host and, with --old DIR (a folder holding an
older release dyninka-host and libDyninkaFixture.so), the old one in the same run:

1. Copies. hopA -> hopB -> blob: blob answers a SIZE-byte body, hopB and hopA relay it back.
   bench/copy_count.c (LD_PRELOAD) counts, in each process, memcpy/memmove calls and the bytes
   they copy by size (under 256 B, 256 B - 4 KiB, 4 KiB and more), and the bytes moved by a
   realloc. The relaying hosts should copy nothing of the body: 0 bytes in large copies.
2. Memory. 20 clients at once ask hopA for 8 MiB bodies; the peak RSS (VmHWM) of hopA and hopB,
   and their RSS at rest before the load.
3. CPU per relayed MiB, next to nginx. One relay in front of blob: hopB (runs its function on the
   small request, forwards it, relays the answer) against nginx with `proxy_buffering off` (and
   `deferred` on listen, as the host uses TCP_DEFER_ACCEPT) proxying to the same blob. CPU time
   (utime+stime) of the relaying process per MiB relayed, in interleaved rounds; blob's CPU is
   the same work for both and shown apart.

hey -disable-keepalive is pinned to CPU 0 and the servers to the other CPUs (as in hop_bench).
Results go to bench/results/DATE-HOST-relay.md. Nothing here runs in the test suite.
"""
import argparse
import datetime
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hop_bench import (ROOT, PIN, Hosts, build, build_counter, cpu_seconds, children, hey, machine,  # noqa: E402
                       pinning_note, pin_servers, free_port, wait_http)

MIB = 1 << 20


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class NginxRelay:
    """One one-worker nginx proxying to `port` with proxy_buffering off (configs/nginx/relay.conf)."""

    def __init__(self, tmp, upstream_port):
        self.port = free_port()
        with open(os.path.join(ROOT, "configs", "nginx", "relay.conf")) as f:
            server = f.read().format(port=self.port, next=upstream_port).rstrip("\n")
        with open(os.path.join(ROOT, "configs", "nginx", "proxy-chain.conf")) as f:
            chain = f.read()
        d = os.path.join(tmp, "nginx-relay")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(chain.format(workers=1, dir=d, servers=server))
        self.proc = subprocess.Popen(["nginx", "-p", d, "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=pin_servers)
        wait_http(self.port, "/healthz")

    def cpu(self):
        return sum(cpu_seconds(p) for p in [self.proc.pid] + children(self.proc.pid))

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def body_for(size):
    return f'{{"size":{size}}}'


def copies(binaries, sizes, requests_cap, counter, tmp, emit):
    emit("## 1. Bytes copied in user space per request: hopA -> hopB -> blob, the body relayed back through hopB and hopA")
    emit()
    emit("Counted by bench/copy_count.c in each process (memcpy/memmove calls and realloc moves); "
         "hey -c 10 -disable-keepalive; per request. *large*: copies of 4 KiB or more; *all*: every copy.")
    emit()
    emit("| host | size | requests | hopA large / all bytes | hopB large / all bytes | blob large bytes | allocations hopA / hopB | CPU us hopA / hopB |")
    emit("|---|---|---|---|---|---|---|---|")
    for name, bin_dir in binaries:
        hosts = Hosts(bin_dir, ["hopA", "hopB", "blob"], preload=counter, tmp=tmp)
        try:
            url = f"http://127.0.0.1:{hosts.ports['hopA']}/"
            for size in sizes:
                hey(url, 4, count=40, body=body_for(size))
                n_wanted = max(50, min(requests_cap, (256 * MIB) // size))
                c0, t0 = hosts.counters(), hosts.cpu()
                r = hey(url, 10, count=n_wanted, body=body_for(size))
                c1, t1 = hosts.counters(), hosts.cpu()
                n = max(r["ok"] + r["errors"], 1)

                def per(s, key):
                    return (c1[s][key] - c0[s][key]) / n

                def total(s):
                    return sum(per(s, f"copy_bytes_{b}") for b in ("small", "medium", "large"))
                emit(f"| {name} | {size} | {n} ({r['errors']} errors) "
                     f"| {per('hopA', 'copy_bytes_large'):.0f} / {total('hopA'):.0f} "
                     f"| {per('hopB', 'copy_bytes_large'):.0f} / {total('hopB'):.0f} "
                     f"| {per('blob', 'copy_bytes_large'):.0f} "
                     f"| {per('hopA', 'allocations'):.1f} / {per('hopB', 'allocations'):.1f} "
                     f"| {(t1['hopA'] - t0['hopA']) / n * 1e6:.0f} / {(t1['hopB'] - t0['hopB']) / n * 1e6:.0f} |")
        finally:
            hosts.stop()
    emit()


def memory(binaries, tmp, emit, clients=20, size=8 * MIB, requests=200):
    emit(f"## 2. Memory of the relaying hosts: {clients} clients at once, {size // MIB} MiB answers, hopA -> hopB -> blob")
    emit()
    emit(f"hey -c {clients} -n {requests} -disable-keepalive. RSS at rest (after one small request) and the peak "
         "RSS (VmHWM) over the run, in MiB.")
    emit()
    emit("| host | hopA rest / peak | hopB rest / peak | blob rest / peak | req/s | errors |")
    emit("|---|---|---|---|---|---|")
    for name, bin_dir in binaries:
        # blob makes and holds each answer (that is the function's own work); the relays should not.
        hosts = Hosts(bin_dir, ["hopA", "hopB", "blob"], tmp=tmp, extra=("--max-in-flight", "1024"))
        try:
            url = f"http://127.0.0.1:{hosts.ports['hopA']}/"
            hey(url, 1, count=2, body=body_for(100))
            rest = {s: status_kib(p.pid, "VmRSS") for s, p in hosts.procs.items()}
            r = hey(url, clients, count=requests, body=body_for(size))
            peak = {s: status_kib(p.pid, "VmHWM") for s, p in hosts.procs.items()}
            cells = " | ".join(f"{rest[s] / 1024:.1f} / {peak[s] / 1024:.1f}" for s in ("hopA", "hopB", "blob"))
            emit(f"| {name} | {cells} | {r['rps']:.1f} | {r['errors']} |")
        finally:
            hosts.stop()
    emit()


def cpu_per_mib(binaries, sizes, rounds, requests_cap, tmp, emit):
    emit("## 3. CPU per relayed MiB: one relay in front of blob, dyninka-host (hopB) against nginx (proxy_buffering off)")
    emit()
    emit("hey -c 10 -disable-keepalive; CPU time (user+system) of the relaying process per MiB of body relayed; "
         f"median of {rounds} interleaved rounds (every round runs every relay once per size). blob's CPU per MiB is the "
         "same work whatever relays it and is shown for scale. hopB also runs its function on the 15-byte request "
         "(decode, encode) before it forwards; nginx forwards the request as it is.")
    emit()
    blob_port = free_port()
    relays = []
    blob = None
    procs = []
    try:
        # One blob for everyone, from the first binary (the current host).
        blob = Hosts(binaries[0][1], ["blob"], tmp=tmp)
        blob_port = blob.ports["blob"]
        for name, bin_dir in binaries:
            hop = subprocess.Popen(
                [os.path.join(bin_dir, "dyninka-host"), "serve", "--app", os.path.join(bin_dir, "libDyninkaFixture.so"),
                 "--service", "hopB", "--port", "0", "--peers", f"blob=127.0.0.1:{blob_port}", "--log-level", "error"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=pin_servers, text=True)
            procs.append(hop)
            port = int(hop.stdout.readline().rsplit(":", 1)[1])
            wait_http(port)
            relays.append((f"dyninka-host {name}", port, lambda p=hop: cpu_seconds(p.pid)))
        nginx = NginxRelay(tmp, blob_port)
        procs.append(nginx)
        relays.append(("nginx proxy_buffering off", nginx.port, nginx.cpu))
        results = {}
        for _ in range(rounds):
            for size in sizes:
                for name, port, cpu in relays:
                    url = f"http://127.0.0.1:{port}/"
                    n_wanted = max(50, min(requests_cap, (256 * MIB) // size))
                    b0, c0 = cpu_seconds(blob.procs["blob"].pid), cpu()
                    r = hey(url, 10, count=n_wanted, body=body_for(size))
                    b1, c1 = cpu_seconds(blob.procs["blob"].pid), cpu()
                    n = max(r["ok"], 1)
                    mib = n * size / MIB
                    results.setdefault((name, size), []).append(
                        {"relay": (c1 - c0) / mib * 1e3, "blob": (b1 - b0) / mib * 1e3, "rps": r["rps"], "errors": r["errors"]})
        emit("| relay | size | CPU ms per MiB (relay) | rounds | blob CPU ms per MiB | req/s | errors |")
        emit("|---|---|---|---|---|---|---|")
        for size in sizes:
            for name, _, _ in relays:
                runs = sorted(results[(name, size)], key=lambda x: x["relay"])
                mid = runs[len(runs) // 2]
                each = " ".join(f"{x['relay']:.2f}" for x in results[(name, size)])
                emit(f"| {name} | {size} | {mid['relay']:.2f} | {each} "
                     f"| {mid['blob']:.2f} | {mid['rps']:.0f} | {sum(x['errors'] for x in runs)} |")
    finally:
        for p in procs:
            if isinstance(p, NginxRelay):
                p.stop()
            else:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if blob:
            blob.stop()
    emit()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", help="folder with an older release dyninka-host and libDyninkaFixture.so, measured beside")
    ap.add_argument("--sizes", default="1024,65536,1048576,8388608", help="body sizes in bytes")
    ap.add_argument("--requests", type=int, default=2000, help="most requests per size and round (at most 256 MiB relayed)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds for the CPU comparison")
    ap.add_argument("--no-build", action="store_true", help="use the existing release build")
    ap.add_argument("--only", default="copies,memory,cpu", help="measurements to run (default all)")
    args = ap.parse_args()
    os.environ["PATH"] += ":/usr/sbin"
    if args.no_build:
        bin_dir = subprocess.run("swift build -c release --show-bin-path", shell=True, cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip()
        counter = build_counter()
    else:
        bin_dir, counter = build()
    binaries = [("new", bin_dir)] + ([("old", args.old)] if args.old else [])
    sizes = [int(s) for s in args.sizes.split(",")]
    only = set(args.only.split(","))
    tmp = tempfile.mkdtemp(prefix="dyninka-relay-")
    started = datetime.datetime.now(datetime.timezone.utc)
    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)
    emit(f"# Relay bench, {started:%Y-%m-%d %H:%M} UTC")
    emit()
    emit(f"Machine: {machine()}. {pinning_note()}. Command: `python3 bench/relay_bench.py {' '.join(sys.argv[1:])}`. "
         f"Binaries: " + ", ".join(f"{n} = {d}" for n, d in binaries) + ".")
    emit()
    if "copies" in only:
        copies(binaries, sizes, args.requests, counter, tmp, emit)
    if "memory" in only:
        memory(binaries, tmp, emit)
    if "cpu" in only:
        cpu_per_mib(binaries, [s for s in sizes if s >= 65536] or sizes, args.rounds, args.requests, tmp, emit)
    path = os.path.join(ROOT, "bench", "results", f"{started:%Y-%m-%d}-{os.uname().nodename}-relay.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
