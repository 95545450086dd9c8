#!/usr/bin/env python3
# Run: python3 bench/reliability.py [--soak 60] [--no-build]
"""Reliability under load, faults and hostile input: a suite that proves nothing is lost.

  1. soak: SOAK s at 50 workers, no keep-alive, the smart-building chain: 0 errors; open fds and
     RSS of every host at the end within 10% of their values at half time (pools grow to the
     working concurrency in the first half; a leak keeps growing)
  2. ramp to 200 workers: 0 connection errors; any refusal a 503 (with Retry-After)
  3. kill -9 a middle service under load: of the requests that started after the kill, every
     failure a 502 naming it, answered within 1 s; the first success comes within 5 s (`dyninka
     run` restarts it); after that first success, 0 failures
  4. rolling restart of one service under load (replacement on the same port, then SIGTERM):
     0 failed requests
  5. hostile input against a running host: each gets its documented status for the documented
     reason (the message says which limit or check refused it); the host still serves
  6. fuzzing the parsers (scripts/fuzz): inputs tried, crashes
  7. fuzzing live hosts (bench/host_fuzz.py, release hosts): a million requests or more, 0 crashes,
     RSS bounded, valid requests still answered after every batch
  8. the soak against gateway mode, for the record
  9-11 (root): across the fog test bed (configs/testbed/fog.json), filterTemperature alone on an
     edge node, clients in the bed's client node: (9) the node killed (every process, nothing
     restarted) and revived: failures are 502 naming it, each within 1 s; (10) the link to it cut
     (100% loss) and healed: 504 naming it within the connect timeout; (11) the link degraded to
     200 ms one way with a 300 ms client deadline: 504 naming it within the deadline. Each: how
     soon the first failure is reported, recovery after healing, and no failure after recovery.
     (12): movingAvg moved between edge nodes four times under load (`dyninka move`): failed
     requests (none allowed), the slowest request against the calm slowest, the throughput around
     each switch. (13): the same with about 1 MB of @Placed state (bench/apps/HeavyState, on
     configs/testbed/pair.json), and the state checked to carry every update.
Prints each figure and a summary table; writes bench/results/DATE-HOST-reliability.md.
Every load is bounded in time; all traffic stays on 127.0.0.1 or inside the test bed's namespaces.
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway_bench  # noqa: E402
from host_fuzz import rss_mib  # noqa: E402
import hop_bench  # noqa: E402

ROOT = hop_bench.ROOT


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0




def enter_netns(name):
    """Moves the calling thread into a network namespace (a test bed node): setns(2) via libc."""
    import ctypes
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), f"setns into {name}")
    finally:
        os.close(fd)


class Load:
    """Threads posting to a URL without keep-alive, recording (time, status, service, latency).
    `netns`: the threads run in that network namespace (the test bed's client node)."""

    def __init__(self, port, path="/", threads=10, body=b"", headers=None, host="127.0.0.1", netns=None):
        self.host, self.netns = host, netns
        self.port, self.path, self.body = port, path, body
        self.headers = dict(headers or {}, Connection="close")
        self.records = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        if self.netns:
            enter_netns(self.netns)
        while not self.stop.is_set():
            t0 = time.time()
            status, service = 0, ""
            try:
                c = http.client.HTTPConnection(self.host, self.port, timeout=10)
                c.request("POST", self.path, body=self.body, headers=self.headers)
                r = c.getresponse()
                data = r.read()
                status = r.status
                if status >= 400:
                    try:
                        service = json.loads(data)["error"]["service"]
                    except Exception:
                        service = "?"
                c.close()
            except Exception as e:
                service = f"connection: {type(e).__name__}"
            with self.lock:
                self.records.append((t0, status, service, time.time() - t0))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)


def run_on_bed(dyninka, app_file, bed, extra, env=None):
    """Starts `dyninka run APP --testbed BED` with the release host and reads what it prints until
    the entry: (the process, {service: node}, the entry's address; None when it never came)."""
    app = subprocess.Popen([dyninka, "run", app_file, "--testbed", bed, "--host-binary",
                            f"{ROOT}/.build-release-host/release/dyninka-host", *extra],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    nodes = {}
    for line in app.stdout:
        parts = line.split()
        if len(parts) == 3:
            nodes[parts[0]] = parts[1]
        if parts and parts[0] == "entry":
            return app, nodes, parts[1].split("//")[1].split(":")[0]
    return app, nodes, None


def stop_on_bed(app, cli):
    """Stops a `run_on_bed` app (SIGTERM, then SIGKILL after 30 s) and takes the bed down."""
    if app:
        app.send_signal(signal.SIGTERM)
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
    cli("down")


def bed_faults(dyninka, release, report):
    """9-11: faults across the fog test bed (root): the smart-building chain point to point with
    its functions on the edge nodes, 10 client threads in the bed's client node. The victim is
    filterTemperature, alone on edge-2; its caller get is on edge-1."""
    def cli(*args):
        return subprocess.run([dyninka, "testbed", *args], cwd=ROOT, capture_output=True, text=True)

    if cli("up", "configs/testbed/fog.json").returncode != 0:
        report(9, "test bed faults", False, "the bed did not come up")
        return
    app = None
    try:
        for a, b in (("edge-1", "cloud"), ("edge-2", "cloud"), ("client", "cloud")):
            cli("link", a, b)  # a LAN: the faults below are the only conditions
        app, nodes, host = run_on_bed(dyninka, "examples/SmartBuilding/App.swift", "configs/testbed/fog.json", ["--spread", "edge-1,edge-2"])
        victim = "filterTemperature"
        where = nodes.get(victim)
        caller = nodes.get("get")
        if where == caller:
            report(9, "test bed faults", False, f"{victim} and get share {where}; the faults need them apart")
            return

        def fault(number, name, start, end, want_status, within, headers=None):
            with Load(8080, host=host, netns="dynbed-client", threads=10, headers=headers) as load:
                time.sleep(2)
                # Times count from when the fault (or the healing) is in place: the command itself
                # (a dyninka process, iptables) takes a little while.
                issued = time.time()
                start()
                t_fault = time.time()
                time.sleep(4)
                healing = time.time()
                end()
                t_heal = time.time()
                time.sleep(5)
            during = [r for r in load.records if t_fault <= r[0] and r[0] + r[3] <= healing]
            failures = [r for r in during if r[1] not in (200, 204)]
            wrong = [r for r in failures if r[1] != want_status or r[2] != victim]
            first_failure = min((r[0] + r[3] for r in load.records if r[0] >= issued and r[1] not in (200, 204)), default=None)
            slowest = max((r[3] for r in failures), default=0)
            after = [r for r in load.records if r[0] >= t_heal]
            first_success = min((r[0] + r[3] for r in after if r[1] in (200, 204)), default=None)
            relapsed = [r for r in after if first_success is not None and r[0] >= first_success and r[1] not in (200, 204)]
            statuses = {}
            for r in during:
                statuses[r[1]] = statuses.get(r[1], 0) + 1
            ok = (bool(failures) and not wrong and slowest <= within and first_success is not None
                  and first_success - t_heal < 5 and not relapsed)
            figure = (f"during the fault {len(during)} requests, statuses {dict(sorted(statuses.items()))}; "
                      f"{len(failures) - len(wrong)} of {len(failures)} failures a {want_status} naming {victim} (on {where}), "
                      f"slowest answered in {slowest * 1000:.0f} ms (bound {within * 1000:.0f} ms); first failure reported "
                      + (f"{(first_failure - issued) * 1000:.0f} ms after the fault command was issued (it took {(t_fault - issued) * 1000:.0f} ms)"
                         if first_failure else "never")
                      + "; after healing " + (f"first success in {(first_success - t_heal) * 1000:.0f} ms" if first_success else "no success")
                      + f", then {len(relapsed)} failures")
            caught = [r for r in load.records if r[0] < issued and r[0] + r[3] > issued]
            if caught:
                figure += (f"; {len(caught)} requests in flight when the fault began, answered "
                           + ", ".join(sorted({f'{r[1]}' for r in caught})) + f" within {max(r[3] for r in caught) * 1000:.0f} ms")
            if wrong:
                figure += f"; not so: {wrong[:2]}"
            report(number, name, ok, figure)

        # 9. The node dies: everything on it killed at once; nothing restarts it until revived.
        fault(9, f"node {where} killed under load, revived after 4 s",
              lambda: cli("kill", where), lambda: cli("revive", where), 502, 1.0)
        # 10. The link between caller and callee cut (100% loss), healed after 4 s.
        fault(10, f"link {caller} <-> {where} cut under load, healed after 4 s",
              lambda: cli("link", caller, where, "--loss", "100"), lambda: cli("link", caller, where), 504, 2.6)
        # 11. The link degraded to 200 ms one way; clients give each request 300 ms.
        fault(11, f"link {caller} <-> {where} degraded to 200 ms, clients' deadline 300 ms",
              lambda: cli("link", caller, where, "--delay", "200"), lambda: cli("link", caller, where), 504, 0.45,
              headers={"Dyninka-Deadline": "300"})

        # 12. movingAvg (with its @Placed state) moved back and forth under load.
        mover = "movingAvg"
        home = nodes.get(mover)
        away = next(n for n in ("edge-1", "edge-2") if n != home)
        ok, figure, _ = moves_under_load(dyninka, mover, (away, home, away, home), host, threads=10)
        report(12, f"{mover} moved 4 times between {home} and {away} under load", ok, figure)
    finally:
        stop_on_bed(app, cli)


def soak(topology, seconds, label):
    """Two halves of SECONDS each after a warm-up: fds and RSS are read after the warm-up, at half
    time and at the end. Pools (kept-alive fetch connections, parser pools) grow to the working
    concurrency and then stay: the check is that the second half does not grow (within 10%), which
    a leak, growing with every request, cannot pass."""
    url = f"http://127.0.0.1:{topology.port}{topology.path}"
    hop_bench.hey(url, 50, duration=5, body="")
    pids = {n: p for n, p in topology.pids.items() if n != "sensor"}
    before = {n: (fds(p), rss_mib(p)) for n, p in pids.items()}
    first = hop_bench.hey(url, 50, duration=seconds / 2, body="")
    middle = {n: (fds(p), rss_mib(p)) for n, p in pids.items()}
    second = hop_bench.hey(url, 50, duration=seconds / 2, body="")
    time.sleep(1)
    after = {n: (fds(p), rss_mib(p)) for n, p in pids.items()}
    drift = []
    errors = first["errors"] + second["errors"]
    # No requests at all is a failure too (a load that never ran cannot show a leak).
    ok = errors == 0 and first["ok"] > 0 and second["ok"] > 0
    for n in pids:
        (f0, m0), (f1, m1), (f2, m2) = before[n], middle[n], after[n]
        fd_ok = f2 <= f1 * 1.1 + 2
        rss_ok = m2 <= m1 * 1.1 + 1
        ok = ok and fd_ok and rss_ok
        drift.append(f"{n} fds {f0}->{f1}->{f2}, RSS {m0:.1f}->{m1:.1f}->{m2:.1f} MiB")
    total = first["ok"] + first["errors"] + second["ok"] + second["errors"]
    figure = (f"{total} requests at {(first['rps'] + second['rps']) / 2:.0f}/s, {errors} errors; "
              "after warm-up -> half time -> end: " + "; ".join(drift))
    return ok, figure


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--soak", type=int, default=60, help="seconds of each soak (default 60)")
    ap.add_argument("--fuzz", type=int, default=60, help="seconds of fuzzing the parsers (default 60)")
    ap.add_argument("--host-fuzz-requests", type=int, default=1_000_000,
                    help="requests the live-host fuzzer sends (default 1000000)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--bed-only", action="store_true", help="run only the test bed checks (9-13)")
    ap.add_argument("--state-values", type=int, default=80_000,
                    help="temperatures the moved service keeps as @Placed state in check 13 (default 80000, about 1 MB)")
    args = ap.parse_args()
    os.environ["PATH"] += ":/usr/sbin"
    release, debug = gateway_bench.binaries(args.no_build)
    if not args.no_build:
        gateway_bench.sh("swift build -c release --product DyninkaFixture >/dev/null")
    started = datetime.datetime.now(datetime.timezone.utc)
    results = []

    def report(number, name, ok, figure):
        results.append((number, name, ok, figure))
        print(f"{number}. {name}: {'PASS' if ok else 'FAIL'} - {figure}", flush=True)

    if args.bed_only:
        if os.geteuid() != 0:
            raise SystemExit("the test bed faults need root")
        bed_faults(f"{debug}/dyninka", release, report)
        bed_state_moves(f"{debug}/dyninka", release, report, args.state_values)
        return finish(results, started, args)
    # 1-3 on the smart-building app under `dyninka run` (release hosts).
    topo = gateway_bench.Topology(debug, release, gateway=False)
    try:
        report(1, f"soak {args.soak} s, 50 workers", *soak(topo, args.soak, "p2p"))

        statuses, conn_errors = {}, 0
        for w in (100, 150, 200):
            r = hop_bench.hey(f"http://127.0.0.1:{topo.port}/", w, duration=10, body="")
            for code, n in r["codes"].items():
                statuses[code] = statuses.get(code, 0) + n
            conn_errors += r["errors"] - sum(n for c, n in r["codes"].items() if not 200 <= c < 300)
        refused = {c: n for c, n in statuses.items() if c not in (200, 204)}
        answered = statuses.get(200, 0) + statuses.get(204, 0)
        ok = conn_errors == 0 and all(c == 503 for c in refused) and answered > 0
        kinds = ", ".join(f"{n} x {c}" for c, n in sorted(refused.items())) or "none"
        report(2, "ramp 100/150/200 workers, 10 s each", ok,
               f"statuses {dict(sorted(statuses.items()))}, {conn_errors} connection errors, refusals: {kinds}"
               + ("" if ok else " (only 503 is allowed)"))

        victim = "filterTemperature"
        with Load(topo.port, threads=10) as load:
            time.sleep(3)
            killed_at = time.time()
            os.kill(topo.pids[victim], signal.SIGKILL)
            time.sleep(7)
        # Only what started after the kill counts; each figure below can fail.
        since = [r for r in load.records if r[0] >= killed_at]
        failures = [r for r in since if r[1] not in (200, 204)]
        wrong = [r for r in failures if r[1] != 502 or r[2] != victim or r[3] > 1.0]
        first_success = min((r[0] + r[3] for r in since if r[1] in (200, 204)), default=None)
        after = [r for r in since if first_success is not None and r[0] >= first_success]
        relapsed = [r for r in after if r[1] not in (200, 204)]
        recovery = (first_success - killed_at) if first_success is not None else None
        ok = bool(since) and not wrong and recovery is not None and recovery < 5 and not relapsed
        figure = (f"{len(since)} requests started after the kill, {len(failures)} failed "
                  f"({len(failures) - len(wrong)} of them a 502 naming {victim} within 1 s, slowest "
                  f"{max((r[3] for r in failures), default=0) * 1000:.0f} ms)")
        if wrong:
            figure += f"; {len(wrong)} not so, e.g. {wrong[:3]}"
        figure += (f"; first success {recovery * 1000:.0f} ms after the kill" if recovery is not None
                   else "; no success after the kill")
        figure += f"; {len(after)} requests after it, {len(relapsed)} failed"
        report(3, f"kill -9 {victim} under load", ok, figure)
    finally:
        topo.stop()

    # 4. rolling restart on the fixture chain, processes started here (no supervisor).
    tmp = tempfile.mkdtemp(prefix="dyninka-rel-")
    migrate = "unknown"
    original = None
    try:
        with open("/proc/sys/net/ipv4/tcp_migrate_req") as f:
            migrate = original = f.read().strip()
        if migrate != "1":
            subprocess.run(["sysctl", "-q", "-w", "net.ipv4.tcp_migrate_req=1"], check=False, capture_output=True)
            with open("/proc/sys/net/ipv4/tcp_migrate_req") as f:
                migrate = f.read().strip()
    except OSError:
        pass
    hosts = hop_bench.Hosts(release, ["get", "map", "scale", "movingAvg"], tmp=tmp)
    try:
        route = {"Dyninka-Route": "map().scale(by: 1.0).movingAvg()"}
        with Load(hosts.ports["get"], threads=10, headers=route) as load:
            time.sleep(2)
            peers = ",".join(f"{s}=127.0.0.1:{p}" for s, p in hosts.ports.items())
            replacement = subprocess.Popen([f"{release}/dyninka-host", "serve", "--app", f"{release}/libDyninkaFixture.so",
                                            "--service", "scale", "--port", str(hosts.ports["scale"]), "--peers", peers,
                                            "--log-level", "error"], stdout=subprocess.DEVNULL, preexec_fn=hop_bench.pin_servers)
            hop_bench.wait_http(hosts.ports["scale"])
            time.sleep(0.5)
            hosts.procs["scale"].send_signal(signal.SIGTERM)
            hosts.procs["scale"].wait(timeout=30)
            time.sleep(3)
        failed = [r for r in load.records if r[1] != 200]
        report(4, "rolling restart of scale under load", not failed,
               f"{len(load.records)} requests, {len(failed)} failed (net.ipv4.tcp_migrate_req={migrate})"
               + (f": {failed[:3]}" if failed else ""))
        hosts.procs["scale"] = replacement
    finally:
        hosts.stop()
        # The machine's own value back, whatever happened.
        if original is not None and original != "1":
            subprocess.run(["sysctl", "-q", "-w", f"net.ipv4.tcp_migrate_req={original}"], check=False, capture_output=True)

    # 5. hostile input. map may call scale and itself (a self-loop is possible), and unlisted
    # names would resolve through a template: a route must still never make a name an address.
    host = hop_bench.Hosts(release, ["map"], tmp=tmp)
    port = host.ports["map"]
    good = b'{"sensor":"s","variable":"Temperature","value":1}'

    def exchange(raw, pause=None, want_body=False):
        s = socket.create_connection(("127.0.0.1", port), timeout=15)
        s.sendall(raw)
        if pause:
            time.sleep(pause)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
        s.close()
        m = re.match(rb"HTTP/1\.1 (\d{3})", data)
        status = int(m.group(1)) if m else 0
        return (status, data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")) if want_body else status

    def post(body, route=None, extra=b""):
        head = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra
        if route is not None:
            head += b"Dyninka-Route: " + route + b"\r\n"
        return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body

    cases = [
        ("malformed request line", b"GARBAGE\r\n\r\n", 400),
        ("bad header", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        ("huge headers", b"GET / HTTP/1.1\r\nX: " + b"a" * 40000 + b"\r\n\r\n", 431),
        ("huge body", b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        ("invalid JSON", post(b"{nope", b""), 400),
        ("wrong types", post(b'{"value":"x"}', b""), 400),
        ("unknown name", post(good, b"teleport()"), 400),
        ("over-long route", post(good, b"scale(by: " + b"1" * 9000 + b")"), 400),
        ("route naming a URL", post(good, b"http://127.0.0.1:1/x()"), 400),
        ("deadline out of range", post(good, b"", b"Dyninka-Deadline: 99999999999999\r\n"), 200),
        ("negative deadline", post(good, b"", b"Dyninka-Deadline: -5\r\n"), 400),
    ]
    # Cases that must be refused for a given reason, which the message names.
    reasoned = [
        # Within --max-hops (64) but a loop: refused by --max-visits, not by length or types.
        ("service revisited within the hop limit", post(good, b".".join([b"scale(by: 1)"] * 10)), 400, "--max-visits"),
        # A name that type-checks as well as any (no receiver type to contradict) but is a host:
        # refused as an unknown service, never looked up.
        ("route naming a host", post(good, b"localhost()"), 400, "unknown service 'localhost'"),
        ("route naming an address", post(good, b"movingAvg().localhost()"), 400, "unknown service 'localhost'"),
    ]
    outcomes = []
    all_ok = True
    for name, raw, expected in cases:
        got = exchange(raw)
        all_ok &= got == expected
        outcomes.append(f"{name} {got}")
    for name, raw, expected, reason in reasoned:
        got, body = exchange(raw, want_body=True)
        right = got == expected and reason in body
        all_ok &= right
        outcomes.append(f"{name} {got}" + ("" if right else f" (expected {expected} naming '{reason}': {body[:160]})"))
    slow = exchange(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", pause=None)
    outcomes.append(f"slowloris {slow}")
    all_ok &= slow == 408
    still = exchange(post(good, b""))
    all_ok &= still == 200
    outcomes.append(f"then a valid request {still}")
    host.stop()
    report(5, "hostile input", all_ok, ", ".join(outcomes))

    # 6. fuzzing.
    out = subprocess.run(["scripts/fuzz", str(args.fuzz)], cwd=ROOT, capture_output=True, text=True)
    line = (out.stdout.strip().splitlines() or ["fuzz: no output"])[-1]
    report(6, f"fuzzing {args.fuzz} s", out.returncode == 0 and " 0 crashes" in line, line.replace("fuzz: ", ""))

    # 7. fuzzing live hosts (release) over sockets.
    out = subprocess.run([sys.executable, "bench/host_fuzz.py", "--bin", release, "--requests", str(args.host_fuzz_requests),
                          "--workers", "128"], cwd=ROOT, capture_output=True, text=True)
    lines = [l.replace("host_fuzz: ", "") for l in out.stdout.splitlines() if l.startswith("host_fuzz: ")]
    summary = next((l for l in lines if " requests in " in l), "no summary")
    sent = int(summary.split()[0]) if summary[0].isdigit() else 0
    ok = out.returncode == 0 and sent >= args.host_fuzz_requests and " 0 crashes" in summary
    report(7, f"fuzzing live hosts, {args.host_fuzz_requests} requests", ok,
           "; ".join(l for l in lines if not l.startswith("seed ")) if ok else "; ".join(lines[-6:]) + out.stderr[-500:])

    # 9-11. faults across the fog test bed (needs root).
    if os.geteuid() == 0:
        bed_faults(f"{debug}/dyninka", release, report)
        bed_state_moves(f"{debug}/dyninka", release, report, args.state_values)
    else:
        print("9-13. test bed checks: skipped (the bed needs root)", flush=True)

    # 8. gateway mode soak.
    topo = gateway_bench.Topology(debug, release, gateway=True)
    try:
        ok, figure = soak(topo, args.soak, "gateway")
        report(8, f"gateway mode soak {args.soak} s, 50 workers (for the record)", ok, figure)
    finally:
        topo.stop()

    finish(results, started, args)


def moves_under_load(dyninka, mover, targets, host, threads):
    """Moves `mover` to each of `targets` in turn (`dyninka move`) while `threads` clients in the
    bed's client node post to `host`:8080 without keep-alive. Returns (ok, figure, records): ok
    when every move succeeded and no request failed. Figures: failed requests, the slowest
    request during a move against the slowest without one, the throughput around each switch,
    and the parts of each move as `dyninka move` reported them."""
    with Load(8080, host=host, netns="dynbed-client", threads=threads) as load:
        time.sleep(2)
        calm_until = time.time()
        windows = []
        for target in targets:
            t0 = time.time()
            out = subprocess.run([dyninka, "move", mover, "--to", target], cwd=ROOT, capture_output=True, text=True)
            windows.append((t0, time.time(), out.returncode, out.stdout.strip() or out.stderr.strip()))
            time.sleep(1.5)
    calm = [r for r in load.records if r[0] < calm_until]
    calm_slowest = max(r[3] for r in calm)
    calm_rate = len(calm) / max(calm_until - min(r[0] for r in load.records), 1e-9)
    failed, slowest, dips, parts = [], 0.0, [], []
    for t0, t1, code, text in windows:
        during = [r for r in load.records if t0 <= r[0] <= t1 + 0.3]
        failed += [r for r in during if r[1] not in (200, 204)]
        slowest = max([slowest] + [r[3] for r in during])
        around = [r for r in load.records if t1 - 0.15 <= r[0] + r[3] <= t1 + 0.15]
        dips.append(len(around) / 0.3 / calm_rate * 100)
        parts.append(text[text.index("listening in"):] if "listening in" in text else f"status {code}: {text[-200:]}")
    failed += [r for r in load.records if r[0] > windows[-1][1] + 0.3 and r[1] not in (200, 204)]
    ok = all(w[2] == 0 for w in windows) and not failed
    figure = (f"{len(load.records)} requests, {len(failed)} failed {[(r[1], r[2]) for r in failed[:5]]}; slowest request during a move "
              f"{slowest * 1000:.0f} ms (without a move {calm_slowest * 1000:.0f} ms: {max(0, slowest - calm_slowest) * 1000:.0f} ms "
              f"more); throughput around the switch " + ", ".join(f"{d:.0f}%" for d in dips) + " of the calm rate; parts: "
              + "; ".join(parts))
    return ok, figure, load.records


def bed_state_moves(dyninka, release, report, values):
    """13 (root): movingAvg of bench/apps/HeavyState, which keeps `values` temperatures as
    @Placed state (80,000: about 1 MB of JSON), moved four times between the pair bed's nodes
    (5 ms link) under 8 client threads in the client node. Passes when no request fails and the
    state carried every update: the count movingAvg reports at the end equals the requests it
    answered (a lost or doubled update, or a state left behind, would change it)."""
    def cli(*args):
        return subprocess.run([dyninka, "testbed", *args], cwd=ROOT, capture_output=True, text=True)

    name = f"movingAvg with {values:,} values of @Placed state (about {len(json.dumps(heavy_window(values))) / 1e6:.1f} MB) moved 4 times under load"
    if cli("up", "configs/testbed/pair.json").returncode != 0:
        return report(13, name, False, "the bed did not come up")
    app = None
    try:
        app, nodes, host = run_on_bed(dyninka, "bench/apps/HeavyState/App.swift", "configs/testbed/pair.json", ["--no-view"],
                                      env=dict(os.environ, STATE_VALUES=str(values)))
        if not host:
            return report(13, name, False, "the app did not start")
        home = nodes.get("movingAvg")
        away = next(n for n in ("cloud", "edge-1") if n != home)
        ok, figure, records = moves_under_load(dyninka, "movingAvg", (away, home, away, home), host, threads=8)
        # Every 200 was one update of movingAvg; one more request reads the count.
        answered = sum(1 for r in records if r[1] == 200)
        result = {}

        def last():
            enter_netns("dynbed-client")
            for _ in range(100):
                c = http.client.HTTPConnection(host, 8080, timeout=10)
                c.request("POST", "/", body=b"", headers={"Connection": "close"})
                r = c.getresponse()
                data = r.read()
                if r.status == 200:
                    result["count"] = json.loads(data)["count"]
                    return
        reader = threading.Thread(target=last)
        reader.start()
        reader.join(timeout=60)
        count = result.get("count")
        carried = count == answered + 1
        report(13, name, ok and carried,
               figure + f"; the count after the moves {count}, requests answered 200 before it {answered}"
               + ("" if carried else " (an update was lost, doubled or left behind)"))
    finally:
        stop_on_bed(app, cli)


def heavy_window(values):
    """The window bench/apps/HeavyState fills movingAvg's state with (for its size as JSON)."""
    return [20 + (i % 1000) / 1024 for i in range(values)]


def finish(results, started, args):
    passed = sum(1 for r in results if r[2])
    lines = [f"# Reliability suite, {started:%Y-%m-%d %H:%M} UTC", "",
             f"Machine: {hop_bench.machine()}. Command: `python3 bench/reliability.py --soak {args.soak} --fuzz {args.fuzz} "
             f"--host-fuzz-requests {args.host_fuzz_requests} --state-values {args.state_values}{' --bed-only' if args.bed_only else ''}`. "
             "Release dyninka-host; the smart-building app via `dyninka run` (checks 1-3, 8), the fixture table (4, 5, 7). "
             "Load: hey -disable-keepalive (1, 2, 7) and Python threads without keep-alive (10 for 3, 4, 9-12; 8 for 13; in "
             "the test bed's client node for 9-13).", "",
             "| # | check | result | figures |", "|---|---|---|---|"]
    for number, name, ok, figure in results:
        lines.append(f"| {number} | {name} | {'PASS' if ok else 'FAIL'} | {figure} |")
    lines += ["", f"{passed} passed, {len(results) - passed} failed"]
    suffix = "testbed-faults" if args.bed_only else "reliability"
    path = os.path.join(ROOT, "bench", "results", f"{started:%Y-%m-%d}-{platform.node()}-{suffix}.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines[4:]))
    print(f"\nwritten to {os.path.relpath(path, ROOT)}")
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
