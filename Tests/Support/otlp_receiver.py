#!/usr/bin/env python3
"""An OTLP/HTTP JSON receiver for tests: POST /v1/traces bodies are parsed strictly against the
OpenTelemetry protobuf schema (opentelemetry-proto from PyPI: unknown fields, wrong types and bad
enum values are errors). OTLP/JSON writes trace and span ids as hex where proto3 JSON would use
base64, so ids are checked as hex of the right length and converted first.

Usage: otlp_receiver.py PORT_FILE LOG_FILE [SECONDS]
Writes the port it listens on (127.0.0.1) to PORT_FILE, and one line per request to LOG_FILE:
"ok SPANS" or "bad REASON". Exits after SECONDS (default 120)."""
import base64, json, re, sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

HEX = {"traceId": 32, "spanId": 16, "parentSpanId": 16}


def strict(body):
    document = json.loads(body)
    count = 0
    for resource in document.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                count += 1
                for key, length in HEX.items():
                    if key not in span:
                        continue
                    value = span[key]
                    if not re.fullmatch("[0-9a-f]{%d}" % length, value):
                        raise ValueError("%s %r is not %d lowercase hex digits" % (key, value, length))
                    span[key] = base64.b64encode(bytes.fromhex(value)).decode()
    json_format.Parse(json.dumps(document), trace_service_pb2.ExportTraceServiceRequest(), ignore_unknown_fields=False)
    return count


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/traces" or self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            line = "bad request %s %s" % (self.path, self.headers.get("Content-Type"))
        else:
            try:
                line = "ok %d" % strict(body)
            except Exception as error:  # any parse failure is the finding
                line = "bad " + str(error).replace("\n", " ")[:300]
        with open(sys.argv[2], "a") as log:
            log.write(line + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as port_file:
    port_file.write(str(server.server_address[1]))
threading.Timer(float(sys.argv[3]) if len(sys.argv) > 3 else 120.0, server.shutdown).start()
server.serve_forever()
