#!/usr/bin/env python3
# Run: python3 sensor.py --port 8079 [--data data/readings.csv] [--rows 50000] [--delay-ms N]
#      python3 sensor.py --generate data/readings.csv
"""The building's sensor endpoint: serves one reading per GET /next, in order, from a dataset of
Urban Observatory style rows (sensor, variable, units, timestamp, value, location).

The dataset is generated deterministically (same rows on every machine, seed 2016) when the file
is missing; it is not committed. GET /reset starts again from the first row; GET /healthz answers ok. --delay-ms (or SENSOR_DELAY_MS)
answers every request that much later, like a remote feed over a WAN.
"""
import argparse
import asyncio
import csv
import datetime
import json
import math
import os
import random
import tempfile

VARIABLES = [  # (variable, units, base, daily amplitude, noise)
    ("Temperature", "degC", 21.0, 2.5, 0.4),
    ("Humidity", "%", 45.0, 8.0, 1.5),
    ("CO2", "ppm", 520.0, 180.0, 25.0),
    ("Light", "lux", 300.0, 280.0, 30.0),
    ("Sound", "dB", 42.0, 9.0, 3.0),
    ("Occupancy", "people", 6.0, 6.0, 1.0),
    ("Pressure", "hPa", 1012.0, 3.0, 0.5),
]
FLOORS = ["G", "1", "2", "3", "4"]


def generate(path, rows):
    rng = random.Random(2016)
    start = datetime.datetime(2018, 1, 8, tzinfo=datetime.timezone.utc)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sensor", "variable", "units", "timestamp", "value", "location"])
        for i in range(rows):
            variable, units, base, amplitude, noise = VARIABLES[rng.randrange(len(VARIABLES))]
            floor = rng.choice(FLOORS)
            room = f"{floor}.{rng.randrange(1, 40):03d}"
            t = start + datetime.timedelta(seconds=30 * i)
            hour = t.hour + t.minute / 60
            value = base + amplitude * math.sin((hour - 9) / 24 * 2 * math.pi) + rng.gauss(0, noise)
            w.writerow([f"usb-{variable.lower()}-{room}", variable, units, t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        f"{value:.2f}", f"Urban Sciences Building, Floor {floor}, Room {room}"])


def load(path):
    with open(path, newline="") as f:
        return [json.dumps({**row, "value": float(row["value"])}, separators=(",", ":")).encode() for row in csv.DictReader(f)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8079)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (a test bed node's address)")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "readings.csv"))
    ap.add_argument("--rows", type=int, default=50000)
    ap.add_argument("--generate", metavar="PATH", help="only write the dataset to PATH")
    ap.add_argument("--delay-ms", type=float, default=float(os.environ.get("SENSOR_DELAY_MS", "0") or 0),
                    help="answer each request this many milliseconds later (a remote feed; default 0)")
    args = ap.parse_args()
    if args.generate:
        generate(args.generate, args.rows)
        return
    if not os.path.exists(args.data):
        try:
            generate(args.data, args.rows)
        except OSError:  # a read-only folder (a container's image): the same rows, in /tmp
            args.data = os.path.join(tempfile.gettempdir(), "readings.csv")
            generate(args.data, args.rows)
    rows = load(args.data)
    try:
        # A faster event loop when installed (scripts/bootstrap --with-bench installs it): the
        # sensor is a stand-in for a device, and a load test should measure the services.
        import uvloop
        run, loop_name = uvloop.run, "uvloop"
    except ImportError:
        run, loop_name = asyncio.run, "asyncio"
    delay = f", answers delayed {args.delay_ms:g} ms" if args.delay_ms > 0 else ""
    print(f"sensor: {len(rows)} rows on http://{args.host}:{args.port}/next ({loop_name}{delay})", flush=True)
    run(serve(rows, args.host, args.port, args.delay_ms / 1000))


def response(status, body, kind=b"application/json", close=False):
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + kind + b"\r\nContent-Length: " + str(len(body)).encode()
            + (b"\r\nConnection: close" if close else b"") + b"\r\n\r\n" + body)


class SensorProtocol(asyncio.Protocol):
    """A minimal HTTP/1.1 server (keep-alive, GET, no request body) as a protocol callback rather than
    a coroutine per connection: the sensor is a simulated device and must stay cheap enough not to be
    what a load test measures. Responses for /next are built once, at start-up."""

    def __init__(self, state, delay):
        self.state = state
        self.delay = delay
        self.pending = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        data = self.pending + data if self.pending else data
        out = []
        start = 0
        while True:
            end = data.find(b"\r\n\r\n", start)
            if end < 0:
                break
            head = data[start:end]
            start = end + 4
            close = b"connection: close" in head.lower()
            out.append(self.answer(head, close))
            if close:
                self.send(b"".join(out), close=True)
                return
        if len(data) - start > 65536:
            self.transport.write(response(b"431 Request Header Fields Too Large", b'{"error":"head too large"}', close=True))
            self.transport.close()
            return
        self.pending = data[start:]
        if out:
            self.send(out[0] if len(out) == 1 else b"".join(out))

    def send(self, payload, close=False):
        if self.delay > 0:
            asyncio.get_running_loop().call_later(self.delay, self.write, payload, close)
        else:
            self.write(payload, close)

    def write(self, payload, close):
        if self.transport.is_closing():
            return
        self.transport.write(payload)
        if close:
            self.transport.close()

    def answer(self, head, close):
        line = head.split(b"\r\n", 1)[0].split(b" ")
        path = line[1] if len(line) > 1 else b""
        state = self.state
        if path == b"/next" and not close:
            out = state["responses"][state["next"] % len(state["responses"])]
            state["next"] += 1
            return out
        if path == b"/next":
            row = state["rows"][state["next"] % len(state["rows"])]
            state["next"] += 1
            return response(b"200 OK", row, close=True)
        if path == b"/reset":
            state["next"] = 0
            return response(b"200 OK", b"reset\n", b"text/plain", close)
        if path == b"/healthz":
            return response(b"200 OK", b"ok\n", b"text/plain", close)
        return response(b"404 Not Found", b'{"error":"GET /next, /reset or /healthz"}', close=close)


async def serve(rows, host, port, delay):
    state = {"next": 0, "rows": rows, "responses": [response(b"200 OK", row) for row in rows]}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SensorProtocol(state, delay), host, port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    main()
