import DyninkaHTTP
import DyninkaTestSupport
import Foundation
import Testing
@testable import DyninkaHost

/// A span as read back from an OTLP/JSON file.
struct ReadSpan {
    var name: String
    var traceID: String
    var spanID: String
    var parentID: String?
    var start: UInt64
    var end: UInt64
    var attributes: [String: String]
    var statusCode: Int
    var statusMessage: String?
    var service: String
    var traceState: String?

    /// Every span in the OTLP/JSON lines of the files given.
    static func read(_ files: [String]) -> [ReadSpan] {
        var spans: [ReadSpan] = []
        for file in files {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                guard let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let resources = json["resourceSpans"] as? [[String: Any]] else { continue }
                for resource in resources {
                    let attributes = ((resource["resource"] as? [String: Any])?["attributes"] as? [[String: Any]]) ?? []
                    let service = Self.attributes(attributes)["service.name"] ?? ""
                    for scope in resource["scopeSpans"] as? [[String: Any]] ?? [] {
                        for span in scope["spans"] as? [[String: Any]] ?? [] {
                            let status = span["status"] as? [String: Any] ?? [:]
                            spans.append(ReadSpan(
                                name: span["name"] as? String ?? "", traceID: span["traceId"] as? String ?? "",
                                spanID: span["spanId"] as? String ?? "", parentID: span["parentSpanId"] as? String,
                                start: UInt64(span["startTimeUnixNano"] as? String ?? "") ?? 0,
                                end: UInt64(span["endTimeUnixNano"] as? String ?? "") ?? 0,
                                attributes: Self.attributes(span["attributes"] as? [[String: Any]] ?? []),
                                statusCode: status["code"] as? Int ?? 0, statusMessage: status["message"] as? String, service: service,
                                traceState: span["traceState"] as? String))
                        }
                    }
                }
            }
        }
        return spans
    }

    private static func attributes(_ list: [[String: Any]]) -> [String: String] {
        var out: [String: String] = [:]
        for item in list {
            guard let key = item["key"] as? String, let value = item["value"] as? [String: Any] else { continue }
            out[key] = (value["stringValue"] as? String) ?? (value["intValue"] as? String)
        }
        return out
    }

    /// Waits up to `seconds` until `files` hold at least `count` spans of `trace` (all when nil).
    static func await(_ files: [String], count: Int, trace: String? = nil, seconds: Double = 5) -> [ReadSpan] {
        let limit = Date(timeIntervalSinceNow: seconds)
        var spans: [ReadSpan] = []
        repeat {
            spans = read(files).filter { trace == nil || $0.traceID == trace }
            if spans.count >= count { return spans }
            usleep(50_000)
        } while Date() < limit
        return spans
    }
}

@Suite struct TraceContextTests {
    func parse(_ text: String) -> (traceHigh: UInt64, traceLow: UInt64, parent: UInt64, flags: UInt8)? {
        Array(text.utf8).withUnsafeBytes { TraceContext.parse($0) }
    }

    @Test func theSpecsExampleParses() throws {
        let parsed = try #require(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
        #expect(parsed.traceHigh == 0x4bf9_2f35_77b3_4da6)
        #expect(parsed.traceLow == 0xa3ce_929d_0e0e_4736)
        #expect(parsed.parent == 0x00f0_67aa_0ba9_02b7)
        #expect(parsed.flags == 1)
    }

    @Test(arguments: [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   // uppercase
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   // zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   // zero parent
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // version ff
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // version 00 with more
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  // later version, no dash
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",   // wrong separator
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",    // short
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bg-01",   // not hex
        "",
    ])
    func invalidValuesAreRefused(_ value: String) {
        #expect(parse(value) == nil, "\(value)")
    }

    @Test func aLaterVersionMayAppendFields() {
        #expect(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-later")?.flags == 1)
    }

    @Test func writingGivesTheSpansOwnIDAsParent() {
        let context = TraceContext(traceHigh: 0x4bf9_2f35_77b3_4da6, traceLow: 0xa3ce_929d_0e0e_4736, parent: 7, span: 0xab, sampled: true)
        let store = ByteStore()
        context.appendTraceparent(to: store)
        #expect(store.string(0..<store.count) == "00-4bf92f3577b34da6a3ce929d0e0e4736-00000000000000ab-01")
        let unsampled = TraceContext(traceHigh: 1, traceLow: 2, parent: 0, span: 3, sampled: false)
        store.removeAll()
        unsampled.appendTraceparent(to: store)
        #expect(store.string(0..<store.count) == "00-00000000000000010000000000000002-0000000000000003-00")
        #expect(unsampled.startedHere)
    }

    @Test func encodedSpansAreOTLPJSON() throws {
        let trace = TraceContext(traceHigh: 1, traceLow: 2, parent: 3, span: 4, sampled: true)
        let spans = [
            SpanRecord(trace: trace, name: "map", start: 1_000, end: 5_000, function: 700, forward: 2_000, next: "movingAvg",
                       status: 200, failedService: nil, message: nil),
            SpanRecord(trace: trace, name: "map", start: 1_000, end: 5_000, function: 0, forward: 0, next: nil,
                       status: 500, failedService: "map", message: "a \"quoted\"\nline"),
        ]
        let text = OTLP.encode(spans, resource: OTLP.Resource(service: "map", app: "App", instance: "1"), clockOffset: 10)
        let path = NSTemporaryDirectory() + "otlp-\(getpid()).jsonl"
        try (text + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        let read = ReadSpan.read([path])
        try #require(read.count == 2)
        #expect(read[0].traceID == "00000000000000010000000000000002")
        #expect(read[0].spanID == "0000000000000004")
        #expect(read[0].parentID == "0000000000000003")
        #expect(read[0].start == 1_010 && read[0].end == 5_010)
        #expect(read[0].attributes["dyninka.next"] == "movingAvg")
        #expect(read[0].attributes["dyninka.forward_start_unix_nano"] == "2010")
        #expect(read[0].attributes["dyninka.function_ns"] == "700")
        #expect(read[0].statusCode == 1)
        #expect(read[0].service == "map")
        #expect(read[1].statusCode == 2)
        #expect(read[1].statusMessage == "a \"quoted\"\nline")
        #expect(read[1].attributes["dyninka.failed_service"] == "map")
    }

    @Test func endpointsParse() {
        #expect(OTLP.endpoint("http://127.0.0.1:4318")! == ("127.0.0.1", 4318, "/v1/traces"))
        #expect(OTLP.endpoint("http://collector:9000/otlp/v1/traces")! == ("collector", 9000, "/otlp/v1/traces"))
        #expect(OTLP.endpoint("http://[::1]:4318/")! == ("::1", 4318, "/v1/traces"))
        #expect(OTLP.endpoint("https://127.0.0.1:4318") == nil)
        #expect(OTLP.endpoint("http://127.0.0.1:x") == nil)
    }
}

/// Trace context across real host processes: continued hop by hop, spans exported as OTLP/JSON.
@Suite(.serialized) struct TracingTests {
    let directory: String = {
        let path = NSTemporaryDirectory() + "dyninka-trace-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    func file(_ name: String) -> String { "\(directory)/\(name).jsonl" }

    static let clientParent = "b7ad6b7169203331"
    static let sampled = "00-0af7651916cd43dd8448eb211c80319c-\(clientParent)-01"

    @Test func aChainsSpansFormOneTreeHopByHop() throws {
        let order = ["movingAvg", "map", "filterTemperature", "get"]
        let cluster = try HostCluster(order, arguments: Dictionary(uniqueKeysWithValues: order.map { ($0, ["--otlp-file", file($0)]) }))
        defer { cluster.stop() }
        let files = order.map(file)
        // The first row is a temperature: it runs the whole chain.
        let response = try cluster["get"].client.post(extra: [("traceparent", Self.sampled)])
        #expect(response.status == 200)
        #expect(response.headers["traceresponse"] == nil, "the client began the trace: nothing to tell it")
        let spans = ReadSpan.await(files, count: 4, trace: "0af7651916cd43dd8448eb211c80319c")
        try #require(spans.count == 4, "\(spans.map(\.name))")
        let by = Dictionary(uniqueKeysWithValues: spans.map { ($0.name, $0) })
        let get = try #require(by["get"]), filter = try #require(by["filterTemperature"])
        let map = try #require(by["map"]), average = try #require(by["movingAvg"])
        #expect(get.parentID == Self.clientParent)
        #expect(filter.parentID == get.spanID)
        #expect(map.parentID == filter.spanID)
        #expect(average.parentID == map.spanID)
        #expect(Set(spans.map(\.spanID)).count == 4)
        #expect(get.attributes["dyninka.next"] == "filterTemperature")
        #expect(average.attributes["dyninka.next"] == nil)
        // Each hop answers after the one it called: spans nest in time.
        #expect(get.start <= filter.start && filter.end <= get.end)
        #expect(map.start <= average.start && average.end <= map.end)
        let forward = UInt64(get.attributes["dyninka.forward_start_unix_nano"] ?? "") ?? 0
        #expect(forward >= get.start && forward <= filter.start)
        #expect(spans.allSatisfy { $0.statusCode == 1 && $0.attributes["http.response.status_code"] != nil })
        #expect(try cluster["get"].client.get("/metrics").text.contains("\ndyninka_spans_dropped_total 0\n"))

        // Without traceparent, the first hop begins a trace and names it in traceresponse.
        let second = try cluster["get"].client.post()
        let traceresponse = try #require(second.headers["traceresponse"])
        let parts = traceresponse.split(separator: "-")
        try #require(parts.count == 4)
        // The second row is not a temperature: filterTemperature drops it.
        let dropped = ReadSpan.await(files, count: 2, trace: String(parts[1]))
        #expect(Set(dropped.map(\.name)) == ["get", "filterTemperature"])
        #expect(dropped.first { $0.name == "get" }?.parentID == nil)
        #expect(dropped.first { $0.name == "get" }?.spanID == String(parts[2]))
    }

    @Test func aFusedChainRecordsASpanPerStageWithNoNetworkTime() throws {
        let host = try HostProcess(service: "get,filterTemperature,map,movingAvg", arguments: ["--otlp-file", file("fused")])
        defer { host.stop() }
        let response = try host.client.post(extra: [("traceparent", Self.sampled)])
        #expect(response.status == 200)
        let spans = ReadSpan.await([file("fused")], count: 4, trace: "0af7651916cd43dd8448eb211c80319c")
        try #require(spans.count == 4, "\(spans.map(\.name))")
        let by = Dictionary(uniqueKeysWithValues: spans.map { ($0.name, $0) })
        let get = try #require(by["get"]), filter = try #require(by["filterTemperature"])
        let map = try #require(by["map"]), average = try #require(by["movingAvg"])
        // The same tree as four hosts make, one process.
        #expect(get.parentID == Self.clientParent)
        #expect(filter.parentID == get.spanID && map.parentID == filter.spanID && average.parentID == map.spanID)
        #expect(get.attributes["dyninka.next"] == "filterTemperature" && average.attributes["dyninka.next"] == nil)
        // No network between fused stages: each starts when the one before handed its output on.
        for (caller, callee) in [(get, filter), (filter, map), (map, average)] {
            let forward = UInt64(caller.attributes["dyninka.forward_start_unix_nano"] ?? "") ?? 0
            #expect(forward == callee.start, "\(caller.name) handed on at \(forward), \(callee.name) started at \(callee.start)")
            #expect(callee.end <= caller.end)
        }
    }

    @Test func anUnsampledTraceIsContinuedButNotRecorded() throws {
        let next = try ScriptedServer { _ in .init(chunks: [ok(#"{"value":1}"#)], close: true) }
        let host = try HostProcess(service: "map", peers: ["movingAvg": next.port], arguments: ["--otlp-file", file("map")])
        defer { host.stop() }
        let unsampled = "00-0af7651916cd43dd8448eb211c80319c-\(Self.clientParent)-00"
        let response = try host.client.post(#"{"sensor":"s","variable":"Temperature","value":30}"#,
                                             extra: [("traceparent", unsampled), ("tracestate", "vendor=a1"), ("tracestate", "other=b2")])
        #expect(response.status == 200)
        let head = try #require(next.heads.first)
        let line = try #require(head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("traceparent:") })
        let value = line.dropFirst("traceparent:".count).trimmingCharacters(in: .whitespaces)
        #expect(value.hasPrefix("00-0af7651916cd43dd8448eb211c80319c-"))
        #expect(value.hasSuffix("-00"))
        #expect(!value.contains(Self.clientParent), "the next hop's parent is map's span, not the client's")
        #expect(head.contains("\r\ntracestate: vendor=a1,other=b2\r\n"), "tracestate is passed on unchanged: \(head)")
        usleep(700_000)
        #expect(ReadSpan.read([file("map")]).isEmpty, "an unsampled trace was recorded")
    }

    @Test func aFailureIsRecordedEvenUnsampled() throws {
        let host = try HostProcess(service: "explode", peers: [:], arguments: ["--otlp-file", file("explode"), "--trace-rate", "0"])
        defer { host.stop() }
        let response = try host.client.post(#"{"sensor":"s7","variable":"Temperature","value":30}"#)
        #expect(response.status == 500)
        let spans = ReadSpan.await([file("explode")], count: 1)
        try #require(spans.count == 1)
        #expect(spans[0].statusCode == 2)
        #expect(spans[0].statusMessage?.contains("sensor s7 exploded") == true)
        #expect(spans[0].attributes["dyninka.failed_service"] == "explode")
        #expect(spans[0].attributes["http.response.status_code"] == "500")
    }

    @Test func gatewayModeTracesEveryCallThroughTheGateway() throws {
        let topology = try GatewayTopology(["get", "filterTemperature", "map", "movingAvg"]) { ["--otlp-file", file($0)] }
        let files = ["get", "filterTemperature", "map", "movingAvg", "gateway", "orchestrator"].map(file)
        let response = try topology.gateway.client.post(path: "/function/orchestrator", extra: [("traceparent", Self.sampled)])
        #expect(response.status == 200)
        // gateway → orchestrator, then per step gateway → function: 1 + 1 + 4 × 2.
        let spans = ReadSpan.await(files, count: 10, trace: "0af7651916cd43dd8448eb211c80319c")
        try #require(spans.count == 10, "\(spans.map(\.name))")
        let root = try #require(spans.first { $0.parentID == Self.clientParent })
        #expect(root.name == "gateway" && root.attributes["dyninka.next"] == "orchestrator")
        let orchestrator = try #require(spans.first { $0.name == "orchestrator" })
        #expect(orchestrator.parentID == root.spanID)
        let steps = spans.filter { $0.name == "gateway" && $0.parentID == orchestrator.spanID }
        #expect(Set(steps.compactMap { $0.attributes["dyninka.next"] }) == ["get", "filterTemperature", "map", "movingAvg"])
        for step in steps {
            let function = spans.first { $0.parentID == step.spanID }
            #expect(function?.name == step.attributes["dyninka.next"])
        }
    }
}
