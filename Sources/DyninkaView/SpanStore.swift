import Foundation

/// A span as dyninka-host exports it (OTLP/JSON), with the attributes the view and
/// `dyninka trace` use.
package struct TraceSpan: Codable, Equatable, Sendable {
    package var traceID: String
    package var spanID: String
    package var parentID: String?
    /// The service (or gateway, orchestrator) that answered.
    package var name: String
    /// Unix nanoseconds.
    package var start: UInt64
    package var end: UInt64
    /// Nanoseconds in the function.
    package var function: UInt64
    package var status: Int
    /// The service called next, and when that call started (Unix ns).
    package var next: String?
    package var forwardStart: UInt64?
    /// A failure this hop answered with: the service it names, and the message.
    package var failedService: String?
    package var message: String?

    package var duration: UInt64 { end >= start ? end - start : 0 }

    /// The spans of one ExportTraceServiceRequest in OTLP/JSON; empty when it is not one.
    package static func decode(otlp data: Data) -> [TraceSpan] {
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let resources = json["resourceSpans"] as? [[String: Any]] else { return [] }
        var spans: [TraceSpan] = []
        for resource in resources {
            for scope in resource["scopeSpans"] as? [[String: Any]] ?? [] {
                for item in scope["spans"] as? [[String: Any]] ?? [] {
                    var attributes: [String: String] = [:]
                    for attribute in item["attributes"] as? [[String: Any]] ?? [] {
                        guard let key = attribute["key"] as? String, let value = attribute["value"] as? [String: Any] else { continue }
                        attributes[key] = (value["stringValue"] as? String) ?? (value["intValue"] as? String)
                            ?? (value["intValue"] as? Int).map(String.init)
                    }
                    func number(_ key: String) -> UInt64? {
                        (item[key] as? String).flatMap { UInt64($0) } ?? (item[key] as? UInt64)
                    }
                    guard let trace = item["traceId"] as? String, let span = item["spanId"] as? String,
                          let start = number("startTimeUnixNano"), let end = number("endTimeUnixNano") else { continue }
                    let parent = (item["parentSpanId"] as? String).flatMap { $0.isEmpty ? nil : $0 }
                    spans.append(TraceSpan(
                        traceID: trace, spanID: span, parentID: parent, name: item["name"] as? String ?? "?", start: start, end: end,
                        function: attributes["dyninka.function_ns"].flatMap { UInt64($0) } ?? 0,
                        status: attributes["http.response.status_code"].flatMap { Int($0) } ?? 0,
                        next: attributes["dyninka.next"], forwardStart: attributes["dyninka.forward_start_unix_nano"].flatMap { UInt64($0) },
                        failedService: attributes["dyninka.failed_service"],
                        message: (item["status"] as? [String: Any])?["message"] as? String))
                }
            }
        }
        return spans
    }
}

/// The spans the hosts of one run exported, kept in memory (the most recent `capacity`), by trace.
package final class SpanStore: @unchecked Sendable {
    private let lock = NSLock()
    private var spans: [TraceSpan] = []
    private var head = 0
    private let capacity: Int
    /// Bytes read so far from each span file being followed.
    private var offsets: [String: UInt64] = [:]
    /// Told of each batch read from a span file (the view forwards them).
    package var onIngest: (@Sendable (Data) -> Void)?

    package init(capacity: Int = 50_000) {
        self.capacity = capacity
        spans.reserveCapacity(capacity)
    }

    /// Adds the spans of one OTLP/JSON export request; returns how many.
    @discardableResult
    package func ingest(otlp data: Data) -> Int {
        let decoded = TraceSpan.decode(otlp: data)
        lock.withLock {
            for span in decoded {
                if spans.count < capacity {
                    spans.append(span)
                } else {
                    spans[head] = span
                    head = (head + 1) % capacity
                }
            }
        }
        return decoded.count
    }

    /// Reads what was appended to the OTLP/JSON lines files in `directory` since the last call.
    package func follow(directory: String) {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in files where name.hasSuffix(".jsonl") {
            let path = directory + "/" + name
            guard let handle = FileHandle(forReadingAtPath: path) else { continue }
            defer { try? handle.close() }
            let offset = lock.withLock { offsets[path] ?? 0 }
            try? handle.seek(toOffset: offset)
            guard let data = try? handle.readToEnd(), !data.isEmpty else { continue }
            // Only whole lines: a batch being written is read next time.
            guard let lastNewline = data.lastIndex(of: 10) else { continue }
            for line in data[data.startIndex...lastNewline].split(separator: 10) {
                ingest(otlp: Data(line))
                onIngest?(Data(line))
            }
            lock.withLock { offsets[path] = offset + UInt64(lastNewline - data.startIndex + 1) }
        }
    }

    /// Every span held, oldest first.
    package var all: [TraceSpan] { lock.withLock { Array(spans[head...] + spans[..<head]) } }

    /// The spans of `trace`.
    package func trace(_ id: String) -> [TraceSpan] { all.filter { $0.traceID == id } }

    /// The most recent traces' root spans, newest first: spans without a parent, and spans whose
    /// parent (the client's, or a span not held) has not arrived within a second (hosts hand
    /// their spans over every 200 ms, so a caller's span may come after its callee's).
    package func recentRoots(_ count: Int, now: Date = Date()) -> [TraceSpan] {
        let all = self.all
        let held = Set(all.map(\.spanID))
        let settled = UInt64(max(now.timeIntervalSince1970 - 1, 0) * 1e9)
        return Array(all.filter { span in span.parentID.map { !held.contains($0) && span.end <= settled } ?? true }
            .sorted { $0.start > $1.start }.prefix(count))
    }

    /// The most recent failures (spans carrying a failure message), newest first.
    package func recentFailures(_ count: Int) -> [TraceSpan] {
        Array(all.filter { $0.message != nil }.sorted { $0.start > $1.start }.prefix(count))
    }
}

/// One request's spans drawn as a tree: each hop's time, its function's, and the network time
/// between a hop and the next (the caller's wait minus the callee's time, both ways).
package enum TraceTree {
    /// Deepest nesting drawn; deeper hops are summarized (a route has at most --max-hops hops).
    static let maxDepth = 128

    /// The tree as text lines; the earliest span without a parent in `spans` at the top. Spans
    /// come from anyone who can POST to the view: a span that is its own ancestor (a cycle),
    /// duplicate ids, or an end before the start draw as what they are, never loop or trap.
    package static func render(_ spans: [TraceSpan]) -> [String] {
        guard !spans.isEmpty else { return [] }
        let ids = Set(spans.map(\.spanID))
        let children = Dictionary(grouping: spans.filter { $0.parentID.map(ids.contains) ?? false }) { $0.parentID! }
        let roots = spans.filter { $0.parentID.map { !ids.contains($0) } ?? true }.sorted { $0.start < $1.start }
        let origin = roots.first?.start ?? spans.map(\.start).min()!
        let total = spans.map(\.end).max()!.subtractingSaturated(origin)
        var lines = ["trace \(spans[0].traceID): \(spans.count) span\(spans.count == 1 ? "" : "s"), \(ms(total)) in all"]
        // Each span is drawn once (by index: ids may repeat); an explicit stack, not recursion.
        var drawn = Set<Int>()
        // Children are listed under the first span of an id only (ids may repeat).
        var expanded = Set<String>()
        let index = Dictionary(grouping: spans.indices) { spans[$0].spanID }
        var cursor: [String: Int] = [:]
        /// An index of `span`'s id not drawn yet (amortized: each id's list is walked once).
        func number(_ span: TraceSpan) -> Int? {
            guard let list = index[span.spanID] else { return nil }
            var at = cursor[span.spanID] ?? 0
            while at < list.count, drawn.contains(list[at]) { at += 1 }
            cursor[span.spanID] = at
            return at < list.count ? list[at] : nil
        }
        struct Step { var span: TraceSpan; var prefix: String; var last: Bool; var parent: TraceSpan?; var depth: Int }
        func draw(_ root: TraceSpan) {
            var stack = [Step(span: root, prefix: "", last: true, parent: nil, depth: 0)]
            while let step = stack.popLast() {
                guard let n = number(step.span) else {
                    lines.append(step.prefix + (step.last ? "└─ " : "├─ ") + "\(step.span.name) (span \(step.span.spanID) again: its parents form a cycle)")
                    continue
                }
                drawn.insert(n)
                let span = step.span
                var line = step.depth == 0 ? "" : step.prefix + (step.last ? "└─ " : "├─ ")
                if let parent = step.parent, let network = network(from: parent, to: span) { line += "[network \(ms(network))] " }
                line += "\(span.name)  \(span.status)  \(ms(span.duration))"
                if span.function > 0 { line += " (function \(ms(span.function)))" }
                line += "  at +\(ms(span.start.subtractingSaturated(origin)))"
                if let message = span.message { line += "  FAILED \(span.failedService.map { "in \($0): " } ?? "")\(message)" }
                lines.append(line)
                guard expanded.insert(span.spanID).inserted else { continue }
                let kids = (children[span.spanID] ?? []).sorted { $0.start < $1.start }
                guard !kids.isEmpty else { continue }
                let prefix = step.depth == 0 ? "" : step.prefix + (step.last ? "   " : "│  ")
                if step.depth + 1 >= maxDepth {
                    // Counted and skipped: the spans below are not drawn anywhere else either.
                    var below = kids, hidden = 0
                    while let next = below.popLast() {
                        guard let n = number(next) else { continue }
                        drawn.insert(n)
                        hidden += 1
                        if expanded.insert(next.spanID).inserted { below += children[next.spanID] ?? [] }
                    }
                    lines.append(prefix + "└─ ... \(hidden) more span(s) below, deeper than \(maxDepth)")
                    continue
                }
                for (position, child) in kids.enumerated().reversed() {
                    stack.append(Step(span: child, prefix: prefix, last: position == kids.count - 1, parent: span, depth: step.depth + 1))
                }
            }
        }
        for root in roots { draw(root) }
        // Spans on a cycle have no root: each cycle is drawn from its earliest span.
        var rest = 0
        while rest < spans.count {
            if drawn.contains(rest) { rest += 1; continue }
            lines.append("(spans whose parents form a cycle:)")
            draw(spans[rest])
        }
        return lines
    }

    /// Time on the network between `parent` and the next hop it called (`child`): from the call
    /// to the child's start, plus from the child's answer to the parent's (nil when unknown).
    /// It is computed from two durations, each read on one host's clock (the caller's wait from
    /// the call to its answer, the callee's own time), so clocks of two hosts that differ a
    /// little cannot hide it.
    package static func network(from parent: TraceSpan, to child: TraceSpan) -> UInt64? {
        guard parent.next == child.name, let forward = parent.forwardStart, parent.end >= forward else { return nil }
        return (parent.end - forward).subtractingSaturated(child.duration)
    }

    /// The network time (ms) of every hop in `spans` whose caller is among them, by callee, then
    /// by caller: what the adapt loops judge hops by.
    package static func networkTimes(_ spans: [TraceSpan]) -> [String: [String: [Double]]] {
        let byID = Dictionary(spans.map { ($0.spanID, $0) }, uniquingKeysWith: { a, _ in a })
        var calls: [String: [String: [Double]]] = [:]
        for span in spans {
            guard let parentID = span.parentID, let parent = byID[parentID], let network = network(from: parent, to: span) else { continue }
            calls[span.name, default: [:]][parent.name, default: []].append(Double(network) / 1e6)
        }
        return calls
    }

    static func ms(_ nanoseconds: UInt64) -> String { String(format: "%.3f ms", Double(nanoseconds) / 1e6) }
}

extension UInt64 {
    /// `self - other`, or 0 when `other` is larger (times in spans come from anyone).
    func subtractingSaturated(_ other: UInt64) -> UInt64 { self >= other ? self - other : 0 }
}
