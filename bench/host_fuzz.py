#!/usr/bin/env python3
# Run: python3 bench/host_fuzz.py --bin DIR [--requests 1000000] [--seconds 0] [--seed N] [--workers 32]
"""Whole-host fuzzing: live dyninka-host processes driven over sockets with generated requests.

Topologies (all on 127.0.0.1, started here, removed at the end):
  mesh     one host per fixture service (filterTemperature, map, movingAvg, scale, slow, calibrate,
           explode, drop, echo, weather, alert), each knowing where every other listens, so
           generated routes can go anywhere, loop back to a service, and fan in
  chain    the default chain filterTemperature -> map -> movingAvg (three hosts, default routes)
  gateway  gateway mode: function instances of get, filterTemperature, map, movingAvg, an
           orchestrator and a gateway

Each request is generated at random: methods, targets and headers (every Dyninka-* header with
edge values: huge, negative, empty, repeated, non-ASCII, very long), routes and arguments from a
grammar (valid, self-looping, mistyped, deep), bodies (valid, malformed, random bytes, chunked),
and how it is delivered: whole, split at random points, pipelined bursts on one connection,
aborted half-way (FIN or RST), or sent by a client that never reads its answer.

Every answer must be an HTTP/1.1 response with a documented status, and every failure body the
protocol's JSON error. After each batch: every host process is alive, its RSS is under the bound,
and a valid request through the chain (and through the gateway) still answers correctly.
Exit status 0 only when all of that held for every batch. Prints the count of requests, of each
status, the peak RSS of each host, and 0 crashes (or what crashed, with its last log lines).
"""
import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

DOCUMENTED = {200, 204, 400, 404, 405, 408, 413, 431, 500, 502, 503, 504}

# The fixture's services: (input type or None, output type, parameters as (label, type)).
SERVICES = {
    "get": (None, "Reading", []),
    "filterTemperature": ("Reading", "Reading", []),
    "map": ("Reading", "Temperature", []),
    "movingAvg": ("Temperature", "Average", []),
    "explode": ("Reading", "Reading", []),
    "drop": ("Reading", "Reading", []),
    "calibrate": ("Temperature", "Temperature", []),
    "scale": ("Temperature", "Temperature", [("by", "Double")]),
    "slow": ("Temperature", "Temperature", [("ms", "Int")]),
    "weather": (None, "Weather", []),
    "alert": ("Average", "Alert", [("conditions", "Weather")]),
    "echo": ("RawJSON", "RawJSON", []),
    "hopA": ("BlobRequest", "BlobRequest", []),
    "blob": ("BlobRequest", "Blob", []),
}
MESH = ["filterTemperature", "map", "movingAvg", "scale", "slow", "calibrate", "explode", "drop", "echo", "weather", "alert"]
BODIES = {
    # Values stay moderate: the fixture's movingAvg keeps a running average, and a sum that
    # overflows to infinity is the app's state gone bad (its later answers are 500 `function`),
    # not something the host can or should prevent. Hostile numbers go into headers and literals.
    "Reading": lambda r: json.dumps({"sensor": "s%d" % r.randrange(9), "variable": r.choice(["Temperature", "CO2"]),
                                     "value": r.choice([20.5, -7, 1e6, 0, 3])}),
    "Temperature": lambda r: json.dumps({"value": r.choice([21.0, -0.0, 1e6, 7])}),
    "Average": lambda r: json.dumps({"average": r.choice([20, 30, -5]), "count": r.randrange(5)}),
    "Weather": lambda r: json.dumps({"condition": "sunny", "outside": 31}),
    "BlobRequest": lambda r: json.dumps({"size": r.randrange(64)}),
    "RawJSON": lambda r: r.choice(['{"a":[1,2,{"b":null}]}', '"text"', "[]", "1e999", "{" * 300 + "}" * 300]),
}
EDGE_NUMBERS = ["0", "-1", "1", "99999999999999", "9300000000000", "18446744073709551615", "1e999", "-0", "",
                " ", "12abc", "\u00e9", "9" * 400, "0x10", "+5", "1 2", "NaN"]


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Host:
    def __init__(self, name, argv, logdir):
        self.name = name
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode().strip()
        if not line or ":" not in line:
            raise SystemExit(f"host_fuzz: {name} did not start: {line!r}; see {self.log_path}")
        self.port = int(line.rsplit(":", 1)[1])
        self.peak = 0.0

    def alive(self):
        return self.proc.poll() is None

    def sample(self):
        self.peak = max(self.peak, rss_mib(self.proc.pid))
        return rss_mib(self.proc.pid)

    def tail(self, n=15):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.log.close()


class Topologies:
    """Starts the mesh, the chain and the gateway topology; knows every host."""

    def __init__(self, bin_dir, logdir):
        host_bin = os.path.join(bin_dir, "dyninka-host")
        app = os.path.join(bin_dir, "libDyninkaFixture.so")
        for path in (host_bin, app):
            if not os.path.exists(path):
                raise SystemExit(f"host_fuzz: {path} is missing; build first (swift build --product dyninka-host "
                                 "and --product DyninkaFixture)")
        common = ["--log-level", "error", "--request-timeout", "2000", "--write-timeout", "2000",
                  "--response-timeout", "5000", "--connect-timeout", "1000"]
        self.hosts = {}
        ports = {name: free_port() for name in MESH}
        peers = ",".join(f"{n}=127.0.0.1:{p}" for n, p in ports.items())
        for name in MESH:
            self.hosts["mesh." + name] = Host("mesh." + name, [host_bin, "serve", "--app", app, "--service", name, "--port",
                                                              str(ports[name]), "--peers", peers] + common, logdir)
        chain = {}
        for name in ["movingAvg", "map", "filterTemperature"]:
            listed = ",".join(f"{n}=127.0.0.1:{h.port}" for n, h in chain.items())
            extra = ["--peers", listed] if listed else []
            chain[name] = Host("chain." + name, [host_bin, "serve", "--app", app, "--service", name, "--port", "0"] + extra + common,
                               logdir)
            self.hosts["chain." + name] = chain[name]
        functions = {}
        for name in ["get", "filterTemperature", "map", "movingAvg"]:
            functions[name] = Host("gw." + name, [host_bin, "gateway-mode", "function", "--app", app, "--service", name, "--port", "0",
                                                  "--log-level", "error"], logdir)
            self.hosts["gw." + name] = functions[name]
        gateway_port, orchestrator_port = free_port(), free_port()
        listed = ",".join(f"{n}=127.0.0.1:{h.port}" for n, h in functions.items())
        self.hosts["gw.gateway"] = Host("gw.gateway", [host_bin, "gateway-mode", "gateway", "--port", str(gateway_port), "--functions",
                                                       listed + f",orchestrator=127.0.0.1:{orchestrator_port}", "--log-level", "error"],
                                        logdir)
        self.hosts["gw.orchestrator"] = Host("gw.orchestrator", [host_bin, "gateway-mode", "orchestrator", "--app", app, "--port",
                                                                 str(orchestrator_port), "--gateway", f"127.0.0.1:{gateway_port}",
                                                                 "--log-level", "error"], logdir)
        self.chain_entry = chain["filterTemperature"].port
        self.gateway = gateway_port
        # What each target port runs: (service or role, name).
        self.targets = [(h.port, key.split(".", 1)[1], key.split(".", 1)[0]) for key, h in self.hosts.items()]

    def stop(self):
        for h in self.hosts.values():
            h.stop()


class Generator:
    """Random requests, from plausible to hostile."""

    def __init__(self, rng):
        self.r = rng

    def literal(self, kind):
        r = self.r
        if kind == "Int":  # slow(ms:): small, the function really sleeps that long
            return str(r.choice([0, 1, 5, 20]))
        return r.choice(["1.0", "2", "-3.5", "1e308", "-1e308", "0", '"x"', "true", "nil", "99999999999999999999",
                         '"\\u0000"', "1e999", "[1]", "{}"])

    def call(self, name, depth):
        params = SERVICES.get(name, (None, "", []))[2]
        r = self.r
        args = []
        for label, kind in params:
            if kind == "Weather":
                value = "weather()" if r.random() < 0.8 else self.chain(None, depth + 1)
            else:
                value = self.literal(kind)
            args.append(f"{label}: {value}")
        if r.random() < 0.05:
            args.append(r.choice(["x: 1", "by: 2", "host: \"10.0.0.1\"", "conditions: map()"]))
        return f"{name}({', '.join(args)})"

    def chain(self, after, depth=0):
        """A chain, mostly type-correct from the output type `after` (None: starts the chain)."""
        r = self.r
        if depth > 3:
            return "weather()"
        steps = []
        current = after
        for _ in range(r.choice([0, 1, 1, 2, 3, 4, 6, 12])):
            if r.random() < 0.85:
                fits = [n for n, (i, _, _) in SERVICES.items()
                        if (current is None and i is None) or (current is not None and i in (current, "RawJSON"))
                        or (current == "RawJSON" and i is not None)]
                if not fits:
                    break
                name = r.choice(fits)
            else:
                name = r.choice(list(SERVICES) + ["teleport", "127.0.0.1:1", "map.map", "", "\u00e9t\u00e9"])
            steps.append(self.call(name, depth))
            current = SERVICES.get(name, (None, None, []))[1]
        joiner = "?." if r.random() < 0.2 else "."
        text = joiner.join(steps)
        if r.random() < 0.05:
            text = r.choice([text + ")", "(" + text, text * 3, text.replace("(", "((", 1), "map(" * 200, text + "\u0000"])
        return text

    def header_value(self):
        r = self.r
        return r.choice(EDGE_NUMBERS + ["x" * r.choice([1, 100, 5000, 20000]), "\xff\xfe", "a,b,,c", "-", "1,2,3",
                                        "9223372036854775807,9223372036854775807"])

    def request(self, service, role, tame=False):
        """(bytes, method) of one request to a host running `service` in `role`. A tame request
        (for a pipelined burst) is well framed and keeps the connection: its headers and body may
        still be hostile, so the burst goes on past it."""
        r = self.r
        method = r.choices(["POST", "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "BREW", "post"],
                           weights=[70, 10, 6, 3, 3, 2, 3, 3])[0]
        if tame:
            method = r.choices(["POST", "GET", "HEAD"], weights=[80, 12, 8])[0]
        if role == "gw" and service == "gateway":
            target = r.choice(["/function/" + r.choice(["get", "map", "orchestrator", "filterTemperature", "nope", 'x"}', "a\\b", ""]),
                               "/", "/metrics", "/healthz"])
        else:
            target = r.choice(["/", "/", "/", f"/{service}", "/healthz", "/metrics", "/readyz", "/nope", "/?q=1",
                               "/" + "a" * r.choice([10, 3000, 20000]), "*", "http://127.0.0.1:1/x"])
        inputs = SERVICES.get(service, ("RawJSON", "", []))[0] or "RawJSON"
        choice = r.random()
        if choice < 0.6:
            body = BODIES.get(inputs, BODIES["RawJSON"])(r)
        elif choice < 0.75:
            body = r.choice(["", "{", "null", '{"value":"x"}', "[" * 2000, '{"value":1}' * 3, "\u00e9"])
        else:
            body = bytes(r.randrange(256) for _ in range(r.choice([1, 10, 200]))).decode("latin-1")
        body = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
        headers = [("Host", "fuzz")]
        output = SERVICES.get(service, (None, None, []))[1]
        if r.random() < 0.7:
            headers.append(("Dyninka-Route", self.chain(output)))
        if r.random() < 0.25:
            params = SERVICES.get(service, (None, None, []))[2]
            headers.append(("Dyninka-Args", ", ".join(f"{l}: {self.literal(k) if k != 'Weather' else self.chain(None, 1)}" for l, k in params)
                            if r.random() < 0.6 else self.header_value()))
        if r.random() < 0.25:
            headers.append(("Dyninka-Deadline", r.choice(EDGE_NUMBERS + ["2000", "50"])))
        if r.random() < 0.1:
            headers.append(("Dyninka-Parts", r.choice([str(len(body)), self.header_value(), f"{len(body)},0", "0," * 50])))
        for _ in range(r.choice([0, 0, 0, 1, 3])):
            name = r.choice(["Dyninka-Route", "Dyninka-Args", "Dyninka-Deadline", "Dyninka-Parts", "X-Junk", "Content-Type"])
            headers.append((name, self.header_value()))
        if r.random() < 0.05 and not tame:
            headers.append(("X-Big", "v" * r.choice([8000, 17000, 70000])))
        if tame:
            headers = [(n, v) for n, v in headers if len(v) < 4000 and not any(ord(c) < 32 and c != "\t" for c in v)]
            target = target if len(target) < 4000 else "/"
        framing = r.random()
        if tame or framing < 0.8 or method in ("GET", "HEAD"):
            wrong = not tame and r.random() < 0.05
            headers.append(("Content-Length", r.choice(["-1", "99999999999", "abc", str(len(body) + 5)]) if wrong else str(len(body))))
            payload = body
        else:
            headers.append(("Transfer-Encoding", "chunked"))
            cut = r.randrange(len(body) + 1)
            payload = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (body[:cut], body[cut:]) if p) + b"0\r\n\r\n"
        if r.random() < 0.3 and not tame:
            headers.append(("Connection", r.choice(["keep-alive", "close", "Upgrade", "bogus"])))
        head = f"{method} {target} HTTP/1.1\r\n".encode() + b"".join(
            n.encode() + b": " + v.encode("utf-8", "surrogateescape") + b"\r\n" for n, v in headers) + b"\r\n"
        if r.random() < 0.01 and not tame:
            head = r.choice([b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00" * 50, b"GET /\r\n\r\n", b"POST / HTTP/1.1\r\nBad Header\r\n\r\n"])
        return head + payload, method


class Stats:
    def __init__(self):
        self.requests = 0
        self.answered = 0
        self.statuses = {}
        self.unanswered = 0
        # Exchanges the client gave up on after 20 s: the host closed, and the close never reached
        # the client (seen under gVisor's network stack); counted, not a host failure.
        self.stalled = 0
        self.violations = []

    def status(self, code):
        self.answered += 1
        self.statuses[code] = self.statuses.get(code, 0) + 1


def parse_responses(data, methods):
    """Splits what came back on one connection into (status, body) responses (Content-Length framed)."""
    out = []
    i = 0
    index = 0
    while i < len(data):
        end = data.find(b"\r\n\r\n", i)
        if end < 0:
            return out, data[i:]
        head = data[i:end].decode("latin-1").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or parts[0] != "HTTP/1.1" or not parts[1].isdigit():
            return out, data[i:]
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
        # A HEAD's answer has no body, unless the request could not even be parsed (then the
        # host cannot know it was HEAD): what follows tells which.
        is_head = index < len(methods) and methods[index] == "HEAD" and (
            len(data) == end + 4 or data.startswith(b"HTTP/1.1 ", end + 4))
        body_length = 0 if is_head else length
        if end + 4 + body_length > len(data):
            return out, data[i:]
        out.append((int(parts[1]), data[end + 4:end + 4 + body_length], is_head))
        index += 1
        i = end + 4 + body_length
    return out, b""


def check(stats, responses):
    for status, body, is_head in responses:
        stats.status(status)
        if status not in DOCUMENTED:
            stats.violations.append(f"undocumented status {status}: {body[:200]!r}")
        if status >= 400 and not is_head:
            try:
                error = json.loads(body)["error"]
                assert isinstance(error["service"], str) and isinstance(error["kind"], str) and isinstance(error["message"], str)
            except Exception:
                stats.violations.append(f"status {status} without the protocol's error body: {body[:200]!r}")


async def send_and_read(port, chunks, methods, mode, rng, stats):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 3)
    except (OSError, asyncio.TimeoutError):
        stats.unanswered += 1
        return
    sock = writer.get_extra_info("socket")
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            if mode == "split":
                await asyncio.sleep(rng.choice([0, 0, 0.001, 0.01]))
        if mode == "abort":
            if rng.random() < 0.5:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            writer.close()
            return
        if mode == "noread":
            await asyncio.sleep(rng.choice([0.05, 0.5, 2.5]))
            writer.close()
            return
        if rng.random() < 0.3:
            writer.write_eof()
        data = b""
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            try:
                part = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if not part:
                break
            data += part
            done, _ = parse_responses(data, methods)
            if len(done) >= len(methods):
                break
        responses, rest = parse_responses(data, methods)
        check(stats, responses)
        stats.unanswered += max(0, len(methods) - len(responses))
        if rest and not rest.startswith(b"HTTP/1.1 "):
            stats.violations.append(f"bytes that are not a response: {rest[:120]!r}")
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def worker(topologies, generator, rng, stats, budget):
    while budget["left"] > 0 and time.monotonic() < budget["until"]:
        port, service, role = rng.choice(topologies.targets)
        mode = rng.choices(["whole", "split", "pipeline", "abort", "noread"], weights=[55, 20, 12, 9, 4])[0]
        count = rng.choice([2, 5, 30, 300]) if mode == "pipeline" else 1
        count = min(count, budget["left"])
        budget["left"] -= count
        stats.requests += count
        # A burst is well framed but for its last request, which may be anything.
        requests = [generator.request(service, role, tame=i < count - 1) for i in range(count)]
        blob = b"".join(raw for raw, _ in requests)
        methods = [m for _, m in requests]
        if mode == "split" and len(blob) > 1:
            cuts = sorted(rng.sample(range(1, len(blob)), min(len(blob) - 1, rng.choice([1, 2, 5]))))
            chunks = [blob[a:b] for a, b in zip([0] + cuts, cuts + [len(blob)])]
        elif mode == "abort":
            chunks = [blob[:rng.randrange(len(blob) + 1)]]
        else:
            chunks = [blob]
        try:
            await asyncio.wait_for(send_and_read(port, chunks, methods, mode, rng, stats), 20)
        except asyncio.TimeoutError:
            stats.stalled += 1


def valid_requests(topologies):
    """A valid request through the chain and one through the gateway; returns what failed."""
    failures = []
    body = json.dumps({"sensor": "s", "variable": "Temperature", "value": 21.5}).encode()
    for key, host in topologies.hosts.items():
        try:
            with socket.create_connection(("127.0.0.1", host.port), timeout=10) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
                if not s.recv(64).startswith(b"HTTP/1.1 200 "):
                    failures.append(f"{key}: /healthz did not answer 200")
        except OSError as e:
            failures.append(f"{key}: /healthz: {e}")
    for name, port, path, route in (("chain", topologies.chain_entry, "/", None), ("gateway", topologies.gateway, "/function/orchestrator", None)):
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n".encode()
        if route is not None:
            head += b"Dyninka-Route: " + route + b"\r\n"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(head + b"\r\n" + body)
                data = b""
                while True:
                    part = s.recv(65536)
                    if not part:
                        break
                    data += part
            status = int(data.split(b" ", 2)[1])
            payload = data.split(b"\r\n\r\n", 1)[1]
            ok = (status == 200 and "average" in json.loads(payload)) or (name == "gateway" and status == 204)
            if not ok:
                failures.append(f"{name}: {status} {payload[:200]!r}")
        except Exception as e:  # noqa: BLE001 - any failure is reported
            failures.append(f"{name}: {type(e).__name__} {e}")
    return failures


def check_hosts(topologies, stats, args):
    """Every host alive and under the RSS bound, and valid requests answered; what failed."""
    failures = []
    for key, host in topologies.hosts.items():
        if not host.alive():
            failures.append(f"{key} exited (status {host.proc.returncode}) after {stats.requests} requests; its last log lines:\n{host.tail()}")
        elif host.sample() > args.rss_limit_mib:
            failures.append(f"{key} RSS {host.sample():.0f} MiB is above {args.rss_limit_mib:.0f} MiB")
    if not failures:
        failures += [f"a valid request failed after {stats.requests} requests: {f}" for f in valid_requests(topologies)]
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="folder with dyninka-host and libDyninkaFixture.so")
    ap.add_argument("--requests", type=int, default=1_000_000, help="requests to send in all (default 1000000)")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (0: no time bound)")
    ap.add_argument("--batch", type=int, default=5000, help="requests between checks (default 5000)")
    ap.add_argument("--workers", type=int, default=32, help="concurrent connections (default 32)")
    ap.add_argument("--rss-limit-mib", type=float, default=256, help="largest RSS a host may reach (default 256)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    logdir = tempfile.mkdtemp(prefix="dyninka-host-fuzz-")
    print(f"host_fuzz: seed {seed}; host logs in {logdir}", flush=True)
    topologies = Topologies(args.bin, logdir)
    stats = Stats()
    started = time.monotonic()
    until = started + args.seconds if args.seconds > 0 else float("inf")
    failures = []
    try:
        async def session():
            # Workers run without a barrier (a batch that waited for its slowest exchange would
            # idle most of the time); the monitor checks the hosts every --batch requests.
            budget = {"left": args.requests, "until": until}
            gen = Generator(rng)
            workers = [asyncio.create_task(worker(topologies, gen, random.Random(rng.random()), stats, budget))
                       for _ in range(args.workers)]
            checked = 0
            while any(not w.done() for w in workers):
                await asyncio.sleep(0.2)
                if stats.requests - checked < args.batch and any(not w.done() for w in workers):
                    continue
                checked = stats.requests
                failures.extend(await asyncio.to_thread(check_hosts, topologies, stats, args))
                if failures:
                    budget["left"] = 0
                    break
                if checked // args.batch % 20 == 0:
                    print(f"host_fuzz: {stats.requests} requests, {time.monotonic() - started:.0f} s", flush=True)
            await asyncio.gather(*workers, return_exceptions=True)
            if not failures:
                failures.extend(await asyncio.to_thread(check_hosts, topologies, stats, args))
        asyncio.run(session())
    finally:
        topologies.stop()
    elapsed = time.monotonic() - started
    crashes = sum(1 for f in failures if " exited " in f)
    peaks = ", ".join(f"{k} {h.peak:.0f}" for k, h in sorted(topologies.hosts.items()))
    statuses = ", ".join(f"{c}: {n}" for c, n in sorted(stats.statuses.items()))
    print(f"host_fuzz: {stats.requests} requests in {elapsed:.0f} s ({stats.requests / max(elapsed, 1e-9):.0f}/s) against "
          f"{len(topologies.hosts)} hosts, {stats.answered} answered, {crashes} crashes, {len(stats.violations)} protocol violations")
    print(f"host_fuzz: answers by status: {statuses}; {stats.unanswered} closed without an answer (aborted, malformed, never read); "
          f"{stats.stalled} exchanges given up after 20 s")
    print(f"host_fuzz: peak RSS (MiB): {peaks}")
    for v in stats.violations[:10]:
        print(f"host_fuzz: violation: {v}")
    for f in failures:
        print(f"host_fuzz: FAILED: {f}")
    ok = not failures and not stats.violations
    print(f"host_fuzz: {'PASS' if ok else 'FAIL'} (seed {seed})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
