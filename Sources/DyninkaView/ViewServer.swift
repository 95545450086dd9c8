import DyninkaCompiler
import DyninkaHTTP
import DyninkaSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where a run's hosts are, as the view scrapes them: it knows endpoints, never a runner.
package struct ViewTargets: Sendable {
    /// Each host: the service (or gateway, orchestrator), its address and port, its node on a bed.
    package var hosts: [(name: String, host: String, port: Int, node: String?)]
    /// The network namespace the hosts are reached from (a bed's client node), or none.
    package var namespace: String?
    /// How the page names the topology ("point to point on the test bed 'fog'").
    package var topology: String

    package init(hosts: [(name: String, host: String, port: Int, node: String?)], namespace: String?, topology: String) {
        self.hosts = hosts
        self.namespace = namespace
        self.topology = topology
    }
}

/// Why the view cannot serve.
package struct ViewFailure: Error, CustomStringConvertible, Sendable {
    package var description: String
}

/// The live view of a running app (`dyninka run`): a page on 127.0.0.1 that shows the dataflow
/// as the file declares it, drawn by Graphviz, with each edge's live rate, latency and errors
/// and each service's function time (from the hosts' own /metrics, scraped every second), the
/// recent failures and traces (from the spans the hosts export to it, OTLP/HTTP or files), and
/// hot swaps and moves as events.
///
/// Endpoints: `GET /` the page, `GET /graph.svg`, `GET /api/state` (JSON), `GET /api/traces`,
/// `GET /api/trace/ID` (text tree; `latest` for the newest), `POST /v1/traces` (OTLP/HTTP JSON).
package final class ViewServer: @unchecked Sendable {
    /// The app drawn (replaced by `adopt` when `--watch` changed it).
    package var ir: AppIR { lock.withLock { appIR } }
    private var appIR: AppIR
    package let spans = SpanStore()
    package let figures = LiveFigures()
    /// The port the page is served on.
    package private(set) var port = 0
    /// Where the hosts append spans when they cannot reach the view (test bed namespaces).
    package let spanDirectory: String
    private let listener: Int32
    private let lock = NSLock()
    private var events: [(at: Date, text: String)] = []
    private var hosts: [(name: String, host: String, port: Int, node: String?)] = []
    private var topology = "point to point"
    /// The network namespace the hosts are reached from (the test bed's client node), or none.
    private var namespace: String?
    private let started = Date()
    private var stopped = false
    private var graphCache: (key: String, svg: String)?
    private let dot: String?
    /// Forwards every batch of spans to the user's own collector (`--otlp-endpoint`), if any.
    package var forwarder: SpanForwarder? {
        didSet {
            guard let forwarder else { return spans.onIngest = nil }
            spans.onIngest = { batch in forwarder.forward(batch) }
        }
    }

    /// Listens on 127.0.0.1:`port` (0: any free port) at once; serve with `start(runner:)`.
    package init(ir: AppIR, port: Int = 0) throws {
        appIR = ir
        spanDirectory = NSTemporaryDirectory() + "dyninka-spans-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: spanDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0, listen(fd, 64) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ViewFailure(description: "the live view cannot listen on 127.0.0.1:\(port) (\(reason)); pick another --view-port, or --no-view")
        }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        listener = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
        dot = ["/usr/bin/dot", "/usr/local/bin/dot"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Where hosts on this machine send their spans.
    package var otlpEndpoint: String { "http://127.0.0.1:\(port)/v1/traces" }
    /// The page's address.
    package var url: String { "http://127.0.0.1:\(port)/" }

    /// Starts serving and scraping the hosts of `targets` every second (call `update(_:)` after a
    /// swap or a move: the view keeps its own copy of where the hosts are).
    package func start(_ targets: ViewTargets) {
        update(targets)
        lock.withLock { topology = targets.topology }
        Thread { [self] in acceptLoop() }.start()
        Thread { [self] in
            while !lock.withLock({ stopped }) {
                refresh()
                usleep(1_000_000)
            }
        }.start()
    }

    /// Takes the hosts' places again.
    package func update(_ targets: ViewTargets) {
        let hosts = targets.hosts
        let namespace = targets.namespace
        lock.withLock {
            self.hosts = hosts
            self.namespace = namespace
        }
    }

    package func stop() {
        lock.withLock { stopped = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        try? FileManager.default.removeItem(atPath: spanDirectory)
    }

    /// Draws `ir` from now on (services added or removed, a new chain).
    package func adopt(_ ir: AppIR) { lock.withLock { appIR = ir; graphCache = nil } }

    /// An event for the timeline (a hot swap, a move).
    package func event(_ text: String) {
        lock.withLock {
            events.append((Date(), text))
            if events.count > 100 { events.removeFirst(events.count - 100) }
        }
    }

    /// One round: every host's /metrics, and the span files (the view does it every second).
    package func refresh() {
        let (hosts, namespace) = lock.withLock { (self.hosts, self.namespace) }
        for host in hosts {
            let reply = try? BlockingHTTP.request(host: host.host, port: host.port, path: "/metrics", timeout: 0.5, namespace: namespace)
            figures.update(host: host.name, metrics: reply?.status == 200 ? reply?.text : nil,
                           own: host.name != "gateway" || ir.service("gateway") != nil)
        }
        spans.follow(directory: spanDirectory)
    }

    // MARK: Serving

    /// Most connections served at once (a thread each); more are closed at once.
    static let maxConnections = 64
    /// Largest request body taken (an OTLP batch of a host is a few MiB at most).
    static let maxBodyBytes = 16 << 20
    /// Longest a client may take to send its whole request.
    static let requestSeconds = 10.0
    private var connections = 0

    private func acceptLoop() {
        while true {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else {
                if errno == EINTR { continue }
                return
            }
            let admitted = lock.withLock { () -> Bool in
                guard connections < Self.maxConnections else { return false }
                connections += 1
                return true
            }
            guard admitted else {
                close(fd)
                continue
            }
            Thread { [self] in
                handle(fd)
                lock.withLock { connections -= 1 }
            }.start()
        }
    }

    /// Why a request may not be served, or nil. The view listens on 127.0.0.1, but a web page
    /// in the user's browser can still send it requests: a cross-site page (its `Origin`), a
    /// page on a name that resolves to 127.0.0.1 (DNS rebinding: its `Host` is not ours), or a
    /// no-cors POST (a "simple" request, whose content type cannot be JSON).
    func refusal(_ request: HTTPMessage) -> (status: Int, message: String)? {
        let headers = request.headers
        let own = ["127.0.0.1:\(port)", "localhost:\(port)", "[::1]:\(port)"]
        guard request.fields.filter({ $0.name.lowercased() == "host" }).count == 1,
              let host = headers["host"]?.lowercased(), own.contains(host) else {
            return (421, "this is the live view on 127.0.0.1:\(port); a request for host '\(headers["host"] ?? "")' is not served (DNS rebinding)\n")
        }
        if let origin = headers["origin"]?.lowercased(), !own.contains(where: { origin == "http://" + $0 }) {
            return (403, "requests from pages of other sites (Origin \(origin)) are not served\n")
        }
        if request.method == "POST" {
            let type = headers["content-type"]?.lowercased() ?? ""
            guard type == "application/json" || type.hasPrefix("application/json;") else {
                return (415, "POST takes JSON here (Content-Type: application/json; /v1/traces OTLP/HTTP, /api/fusion {\"groups\": ...}); got '\(type)'\n")
            }
        }
        return nil
    }

    private func handle(_ fd: Int32) {
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let reader = HTTPMessage.Reader(.request, maxBodyBytes: Self.maxBodyBytes)
        var buffer = [UInt8](repeating: 0, count: 65536)
        var request: HTTPMessage?
        let deadline = Date().addingTimeInterval(Self.requestSeconds)
        while request == nil {
            guard Date() < deadline else { return reply(fd, 408, "text/plain", "request not received within \(Int(Self.requestSeconds)) s\n") }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0, errno == EAGAIN || errno == EINTR { continue }
            guard n > 0 else { return }
            switch buffer.withUnsafeBytes({ reader.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }) {
            case .complete(let message, _): request = message
            case .needMore: continue
            case .invalid: return reply(fd, 400, "text/plain", "bad request (or a body over \(Self.maxBodyBytes >> 20) MiB)\n")
            }
        }
        guard let request else { return }
        if let refused = refusal(request) { return reply(fd, refused.status, "text/plain", refused.message) }
        let method = request.method
        let path = String(request.target.prefix { $0 != "?" })
        switch (method, path) {
        case ("POST", "/v1/traces"):
            let body = Data(request.body)
            spans.ingest(otlp: body)
            forwarder?.forward(body)
            reply(fd, 200, "application/json", "{}")
        case ("POST", "/api/fusion"):
            handleFusion(fd, request.body)
        case ("GET", "/"):
            reply(fd, 200, "text/html; charset=utf-8", ViewPage.html(app: ir.name))
        case ("GET", "/graph.svg"):
            reply(fd, 200, "image/svg+xml", graphSVG())
        case ("GET", "/api/state"):
            reply(fd, 200, "application/json", stateJSON())
        case ("GET", "/api/traces"):
            let roots = spans.recentRoots(30)
            reply(fd, 200, "application/json", Self.json(roots.map { ["trace": $0.traceID, "name": $0.name, "status": $0.status,
                                                                           "ms": Double($0.duration) / 1e6] }))
        case ("GET", _) where path.hasPrefix("/api/trace/"):
            var id = String(path.dropFirst("/api/trace/".count))
            if id == "latest" { id = spans.recentRoots(1).first?.traceID ?? "" }
            let lines = TraceTree.render(spans.trace(id))
            if lines.isEmpty { return reply(fd, 404, "text/plain", "no spans of trace '\(id)' are held (the view keeps the most recent 50,000 spans)\n") }
            reply(fd, 200, "text/plain; charset=utf-8", lines.joined(separator: "\n") + "\n")
        default:
            reply(fd, 404, "text/plain", "no such page: \(method) \(path)\n")
        }
    }

    // MARK: Fusion asked through the view

    /// A change of which services share a host, asked with `POST /api/fusion`, waiting for the
    /// run to carry it out (`takeFusionRequests`) and answer.
    package final class FusionRequest: @unchecked Sendable {
        /// The new groups of the services they name (`LocalRunner.regroup`).
        package let groups: [[String]]
        private let done = DispatchSemaphore(value: 0)
        // Written once by the run's thread before `done` is signalled; read after the wait.
        private var outcome: (ok: Bool, text: String) = (false, "")

        init(groups: [[String]]) { self.groups = groups }

        /// The run's answer: whether it happened and what it did (or why not).
        package func finish(ok: Bool, _ text: String) {
            outcome = (ok, text)
            done.signal()
        }

        func wait(seconds: Double) -> (ok: Bool, text: String)? {
            done.wait(timeout: .now() + seconds) == .success ? outcome : nil
        }
    }

    private let fusionRequests = NSLock()
    private var pendingFusion: [FusionRequest] = []

    /// The fusion changes asked since the last call, for the run to carry out in order.
    package func takeFusionRequests() -> [FusionRequest] {
        fusionRequests.lock()
        defer { fusionRequests.unlock() }
        let taken = pendingFusion
        pendingFusion.removeAll()
        return taken
    }

    /// `POST /api/fusion` with `{"groups": [["map", "movingAvg"]]}`: the named services' hosts are
    /// replaced by hosts serving those groups (fuse an edge; `[["map"], ["movingAvg"]]` splits it)
    /// while the app serves; answers once done, with what the new hosts made of the state.
    private func handleFusion(_ fd: Int32, _ body: [UInt8]) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let groups = object["groups"] as? [[String]], !groups.isEmpty, groups.allSatisfy({ !$0.isEmpty }) else {
            return reply(fd, 400, "text/plain", "POST /api/fusion takes {\"groups\": [[\"a\", \"b\"], [\"c\"]]}: each group the services one host serves\n")
        }
        let request = FusionRequest(groups: groups)
        fusionRequests.lock()
        pendingFusion.append(request)
        fusionRequests.unlock()
        // A regroup waits for the old hosts to hand over: their bound is seconds, a minute at most.
        var timeout = timeval(tv_sec: 130, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let outcome = request.wait(seconds: 120) else {
            return reply(fd, 504, "text/plain", "the run did not carry out the change within 120 s (is it serving point to point?)\n")
        }
        reply(fd, outcome.ok ? 200 : 409, "application/json", Self.json(["ok": outcome.ok, "report": outcome.text]) + "\n")
    }

    private func reply(_ fd: Int32, _ status: Int, _ type: String, _ body: String) {
        let bytes = Array(body.utf8)
        let head = HTTPWriter.responseHead(status: status, fields: [("Content-Type", type), ("Cache-Control", "no-store"),
                                                                    ("X-Content-Type-Options", "nosniff")],
                                           contentLength: bytes.count, keepAlive: false)
        for part in [head.array, bytes] {
            var sent = 0
            while sent < part.count {
                let n = part[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return }
                sent += n
            }
        }
    }

    static func json(_ value: Any) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])) ?? Data("null".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: What the page shows

    /// The state the page draws, as JSON.
    func stateJSON() -> String {
        let (hosts, events, topology) = lock.withLock { (self.hosts, self.events, self.topology) }
        let figures = self.figures.figures
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var services: [[String: Any]] = []
        for host in hosts {
            let service = ir.service(host.name)
            var entry: [String: Any] = ["name": host.name, "address": "\(host.host):\(host.port)", "instances": 1,
                                        "state": service?.placedState ?? [], "role": service == nil ? host.name : "service"]
            if let node = host.node { entry["node"] = node }
            if let f = figures[host.name] {
                var live: [String: Any] = ["rate": f.rate, "errorRate": f.errorRate, "dropRate": f.dropRate, "total": f.total,
                                           "inFlight": f.inFlight]
                if let p50 = f.p50 { live["p50"] = p50 }
                if let p99 = f.p99 { live["p99"] = p99 }
                if let function = f.function { live["function"] = function }
                entry["figures"] = live
            } else {
                entry["down"] = true
            }
            services.append(entry)
        }
        // The same failure again and again is one row, with how often and when it last happened.
        var failures: [[String: Any]] = []
        var rows: [String: Int] = [:]
        for span in spans.recentFailures(500) {
            let service = span.failedService ?? span.name
            let key = "\(service)\u{0}\(span.status)\u{0}\(span.message ?? "")"
            if let row = rows[key] {
                failures[row]["count"] = (failures[row]["count"] as? Int ?? 1) + 1
                continue
            }
            guard failures.count < 12 else { continue }
            rows[key] = failures.count
            failures.append(["at": formatter.string(from: Date(timeIntervalSince1970: Double(span.start) / 1e9)), "service": service,
                             "status": span.status, "message": span.message ?? "", "trace": span.traceID, "count": 1])
        }
        let state: [String: Any] = [
            "app": ir.name, "topology": topology, "uptime": Date().timeIntervalSince(started),
            "route": ([ir.dataflow.entry] + ir.dataflow.steps.dropFirst().map(\.service)).joined(separator: " → "),
            "services": services, "failures": failures,
            "events": events.reversed().map { ["at": formatter.string(from: $0.at), "text": $0.text] },
            "traces": spans.recentRoots(15).map { ["trace": $0.traceID, "name": $0.name, "status": $0.status, "ms": Double($0.duration) / 1e6] },
        ]
        return Self.json(state)
    }

    /// The dataflow with live figures, in Graphviz's DOT.
    func graphDOT() -> String {
        let (nodes, edges) = DataflowGraph.edges(ir)
        let figures = self.figures.figures
        let placement = Dictionary(lock.withLock { hosts }.map { ($0.name, $0.node) }, uniquingKeysWith: { a, _ in a })
        func escape(_ text: String) -> String {
            text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        func edgeLabel(_ service: String) -> String {
            guard let f = figures[service] else { return "no figures" }
            var text = String(format: "%.1f req/s", f.rate)
            if let p50 = f.p50, let p99 = f.p99 { text += String(format: "\\np50 %.2f ms · p99 %.2f ms", p50, p99) }
            if f.rate > 0 { text += String(format: "\\nerrors %.1f%%", f.errorRate * 100) }
            return text
        }
        var out = "digraph dataflow {\n  rankdir=LR; bgcolor=\"transparent\"; pad=0.2; nodesep=0.5; ranksep=0.9;\n"
        out += "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#f4f6fb\", color=\"#5b6b8c\", fontname=\"Helvetica\", fontsize=11];\n"
        out += "  edge [fontname=\"Helvetica\", fontsize=9, color=\"#5b6b8c\"];\n"
        out += "  client [shape=oval, fillcolor=\"#ffffff\"];\n  result [shape=oval, fillcolor=\"#ffffff\"];\n"
        for name in nodes {
            let service = ir.service(name)
            var rows = ["<b>\(escape(name))</b>"]
            if let node = placement[name] ?? nil { rows.append("node \(escape(node))") }
            rows.append("1 instance")
            if let state = service?.placedState, !state.isEmpty { rows.append("state: \(escape(state.joined(separator: ", ")))") }
            let f = figures[name]
            if let function = f?.function { rows.append(String(format: "function %.3f ms", function)) }
            let failing = (f?.errorRate ?? 0) > 0
            let down = f == nil
            let color = down ? "#9aa3b5" : failing ? "#c0392b" : "#5b6b8c"
            let fill = down ? "#eceef3" : failing ? "#fdecea" : "#f4f6fb"
            out += "  \"\(name)\" [id=\"service-\(name)\", color=\"\(color)\", fillcolor=\"\(fill)\", label=<\(rows.joined(separator: "<br/>"))>];\n"
        }
        out += "  client -> \"\(ir.dataflow.entry)\" [id=\"edge-client-\(ir.dataflow.entry)\", label=\"\(edgeLabel(ir.dataflow.entry))\"];\n"
        for edge in edges {
            // The service called: the next step, or for a dependency the one feeding the argument.
            let callee = edge.dependency ? edge.from : edge.to
            var attributes = ["id=\"edge-\(edge.from)-\(edge.to)\"", "label=\"\(edge.label.map { $0 + "\\n" } ?? "")\(edgeLabel(callee))\""]
            if edge.dependency { attributes.append("style=dashed") }
            if (figures[callee]?.errorRate ?? 0) > 0 { attributes.append("color=\"#c0392b\"") }
            out += "  \"\(edge.from)\" -> \"\(edge.to)\" [\(attributes.joined(separator: ", "))];\n"
        }
        for name in nodes where ir.service(name)?.outputOptional == true {
            let rate = figures[name]?.dropRate ?? 0
            out += "  \"drop-\(name)\" [shape=plaintext, style=\"\", label=\"dropped (204)\"];\n"
            out += "  \"\(name)\" -> \"drop-\(name)\" [id=\"drop-\(name)\", style=dotted, label=\"\(String(format: "%.1f/s", rate))\"];\n"
        }
        if let last = ir.dataflow.steps.last?.service { out += "  \"\(last)\" -> result;\n" }
        return out + "}\n"
    }

    /// The graph drawn by Graphviz (re-drawn when its figures change, at most once a second).
    func graphSVG() -> String {
        let source = graphDOT()
        if let cache = lock.withLock({ graphCache }), cache.key == source { return cache.svg }
        guard let dot else {
            return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"40\"><text x=\"10\" y=\"25\">Graphviz's dot is not installed (apt-get install graphviz); the tables below still update.</text></svg>"
        }
        guard let output = try? Command.run(dot, ["-Tsvg"], input: source), output.status == 0 else {
            return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"40\"><text x=\"10\" y=\"25\">dot failed to draw the graph</text></svg>"
        }
        // Drop the XML prologue: the page inlines the SVG.
        let svg = output.stdout.range(of: "<svg").map { String(output.stdout[$0.lowerBound...]) } ?? output.stdout
        lock.withLock { graphCache = (source, svg) }
        return svg
    }
}
