import DyninkaRunner
@testable import DyninkaView
import Foundation
import Testing
@testable import DyninkaDeploy

/// What the live view computes from the hosts' metrics and spans.
@Suite struct ViewModelTests {
    static func exposition(ok: Int, failed: Int, dropped: Int, buckets: [(String, Int)], functionSum: Double, functionCount: Int) -> String {
        var text = """
            # HELP dyninka_requests_total Requests answered, by service and HTTP status.
            # TYPE dyninka_requests_total counter
            dyninka_requests_total{service="map",code="200"} \(ok)
            dyninka_requests_total{service="map",code="500"} \(failed)
            dyninka_requests_total{service="map",code="204"} \(dropped)
            dyninka_requests_total{service="other",code="200"} 999

            """
        for (le, count) in buckets { text += "dyninka_request_duration_seconds_bucket{service=\"map\",le=\"\(le)\"} \(count)\n" }
        text += "dyninka_function_duration_seconds_sum{service=\"map\"} \(functionSum)\n"
        text += "dyninka_function_duration_seconds_count{service=\"map\"} \(functionCount)\n"
        text += "dyninka_in_flight_requests 3\n"
        return text
    }

    @Test func samplesParseWithEscapedLabels() {
        let samples = MetricSample.parse(#"""
            # TYPE x counter
            x{a="1",b="say \"hi\"\\"} 4
            y 2.5
            z{le="+Inf"} +Inf
            broken{a="1" 
            """#)
        #expect(samples.count == 3)
        #expect(samples[0] == MetricSample(name: "x", labels: ["a": "1", "b": #"say "hi"\"#], value: 4))
        #expect(samples[1] == MetricSample(name: "y", labels: [:], value: 2.5))
        #expect(samples[2].value == .infinity && samples[2].labels["le"] == "+Inf")
    }

    @Test func figuresComeFromTheDifferenceOfTwoScrapes() {
        let figures = LiveFigures()
        let start = Date(timeIntervalSince1970: 1000)
        figures.update(host: "map", metrics: Self.exposition(ok: 100, failed: 0, dropped: 0,
                                                             buckets: [("0.001", 50), ("0.01", 100), ("+Inf", 100)],
                                                             functionSum: 0.1, functionCount: 100), at: start)
        #expect(figures.figures["map"]?.rate == 0, "one scrape gives no rate")
        // 2 s later: 180 more 200s, 10 more 500s, 10 more 204s; the 200 new answers: 100 under 1 ms,
        // 90 in 1-10 ms, 10 over 10 ms.
        figures.update(host: "map", metrics: Self.exposition(ok: 280, failed: 10, dropped: 10,
                                                             buckets: [("0.001", 150), ("0.01", 290), ("+Inf", 300)],
                                                             functionSum: 0.5, functionCount: 300), at: start.addingTimeInterval(2))
        let f = try! #require(figures.figures["map"])
        #expect(f.rate == 100, "200 answers in 2 s; the other service's series is not counted")
        #expect(abs(f.errorRate - 0.05) < 1e-9)
        #expect(f.dropRate == 5)
        #expect(abs(f.p50! - 1.0) < 1e-9, "the 100th of 200 answers is at the top of the first bucket")
        #expect(abs(f.p99! - 10.0) < 1e-9, "the 198th falls past 10 ms: the highest finite bound")
        #expect(abs(f.function! - 2.0) < 1e-9, "0.4 s over 200 calls")
        #expect(f.total == 300 && f.inFlight == 3)
        figures.update(host: "map", metrics: nil)
        #expect(figures.figures["map"] == nil, "a host that does not answer has no figures")
    }

    @Test func quantilesInterpolateInsideTheirBucket() {
        #expect(ServiceCounters.quantile(0.5, [(0.001, 0), (0.002, 10), (.infinity, 10)]) == 0.0015)
        #expect(ServiceCounters.quantile(0.5, [(0.001, 0), (.infinity, 0)]) == nil)
    }

    func span(_ name: String, _ id: String, parent: String?, start: UInt64, end: UInt64, next: String? = nil, forward: UInt64? = nil,
              message: String? = nil) -> TraceSpan {
        TraceSpan(traceID: "t", spanID: id, parentID: parent, name: name, start: start, end: end, function: 1_000, status: message == nil ? 200 : 500,
                  next: next, forwardStart: forward, failedService: message == nil ? nil : name, message: message)
    }

    @Test func aTreeShowsEachHopAndTheNetworkBetween() {
        let spans = [
            span("assess", "b", parent: "a", start: 1_300_000, end: 2_600_000, next: "alert", forward: 2_000_000),
            span("validate", "a", parent: "client", start: 1_000_000, end: 3_000_000, next: "assess", forward: 1_100_000),
            span("weather", "c", parent: "b", start: 1_400_000, end: 1_500_000),
            span("alert", "d", parent: "b", start: 2_100_000, end: 2_400_000, message: "no"),
        ]
        let lines = TraceTree.render(spans)
        #expect(lines == [
            "trace t: 4 spans, 2.000 ms in all",
            "validate  200  2.000 ms (function 0.001 ms)  at +0.000 ms",
            "└─ [network 0.600 ms] assess  200  1.300 ms (function 0.001 ms)  at +0.300 ms",
            "   ├─ weather  200  0.100 ms (function 0.001 ms)  at +0.400 ms",
            "   └─ [network 0.300 ms] alert  500  0.300 ms (function 0.001 ms)  at +1.100 ms  FAILED in alert: no",
        ])
    }

    @Test func aSpanWaitsASecondForItsCallerBeforeItCountsAsARoot() {
        let store = SpanStore()
        let now = Date(timeIntervalSince1970: 100)
        func otlp(_ id: String, parent: String?, end: UInt64) -> Data {
            let parentField = parent.map { ",\"parentSpanId\":\"\($0)\"" } ?? ""
            return Data(#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"T\#(id)","spanId":"\#(id)"\#(parentField),"startTimeUnixNano":"\#(end - 1000)","endTimeUnixNano":"\#(end)","name":"n"}]}]}]}"#.utf8)
        }
        store.ingest(otlp: otlp("a", parent: nil, end: 99_900_000_000))
        store.ingest(otlp: otlp("b", parent: "missing", end: 99_800_000_000))
        store.ingest(otlp: otlp("c", parent: "missing", end: 98_500_000_000))
        #expect(store.recentRoots(10, now: now).map(\.spanID) == ["a", "c"], "b's caller may still arrive")
    }

    @Test func theStoreKeepsTheNewestSpansAndFollowsFiles() throws {
        let store = SpanStore(capacity: 3)
        let line = #"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"T","spanId":"S","startTimeUnixNano":"5","endTimeUnixNano":"9","name":"get","attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}}]}]}]}]}"#
        for i in 0..<5 {
            store.ingest(otlp: Data(line.replacingOccurrences(of: "\"S\"", with: "\"S\(i)\"").utf8))
        }
        #expect(store.all.map(\.spanID) == ["S2", "S3", "S4"])
        #expect(store.all.first?.status == 200 && store.all.first?.duration == 4)

        let folder = NSTemporaryDirectory() + "dyninka-follow-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let following = SpanStore()
        // A batch still being written (no newline yet) is read next time, whole.
        try (line + "\n" + line.prefix(40)).write(toFile: folder + "/spans.jsonl", atomically: false, encoding: .utf8)
        following.follow(directory: folder)
        #expect(following.all.count == 1)
        let handle = try #require(FileHandle(forWritingAtPath: folder + "/spans.jsonl"))
        handle.seekToEndOfFile()
        handle.write(Data((line.dropFirst(40) + "\n").utf8))
        try handle.close()
        following.follow(directory: folder)
        #expect(following.all.count == 2)
    }
}

/// Spans come from anyone who can reach the view: no shape of them may loop, trap or blow up.
@Suite struct HostileSpanTests {
    func span(_ id: String, parent: String?, start: UInt64 = 1_000, end: UInt64 = 2_000) -> TraceSpan {
        TraceSpan(traceID: "t", spanID: id, parentID: parent, name: "s\(id)", start: start, end: end, function: 0, status: 200,
                  next: nil, forwardStart: nil, failedService: nil, message: nil)
    }

    @Test func aSpanThatIsItsOwnParentDrawsOnce() {
        let lines = TraceTree.render([span("a", parent: "a"), span("a", parent: "a")])
        #expect(lines.count <= 5, "\(lines)")
        #expect(lines.contains { $0.contains("form a cycle") })
    }

    @Test func aCycleOfTwoDrawsBothOnce() {
        let lines = TraceTree.render([span("a", parent: "b"), span("b", parent: "a")])
        #expect(lines.filter { $0.contains("sa ") || $0.hasSuffix("sa") || $0.contains("sa  ") }.count >= 1)
        #expect(lines.count <= 6, "\(lines)")
    }

    @Test func anEndBeforeItsStartDoesNotTrap() {
        let lines = TraceTree.render([span("a", parent: nil, start: 5_000, end: 1_000), span("b", parent: "a", start: 0, end: 0)])
        #expect(lines.first == "trace t: 2 spans, 0.000 ms in all", "\(lines)")
    }

    @Test func manySpansWithOneIDAndADeepChainStayLinear() {
        let same = (0..<20_000).map { _ in span("x", parent: "x") }
        let started = Date()
        let lines = TraceTree.render(same)
        #expect(lines.count <= 40_010, "\(lines.count)")
        let chain = (0..<20_000).map { span("\($0)", parent: $0 == 0 ? nil : "\($0 - 1)") }
        let deep = TraceTree.render(chain)
        #expect(deep.count <= TraceTree.maxDepth + 3 && deep.last?.contains("deeper than") == true)
        #expect(Date().timeIntervalSince(started) < 10, "rendering hostile traces took \(Date().timeIntervalSince(started)) s")
    }
}

extension HostileSpanTests {
    @Test func networkTimeNeedsNoCommonClock() {
        // The callee's clock runs 1 ms behind the caller's: its span seems to start before the call.
        let caller = TraceSpan(traceID: "t", spanID: "a", parentID: nil, name: "validate", start: 10_000_000, end: 10_800_000, function: 0,
                               status: 200, next: "assess", forwardStart: 10_100_000, failedService: nil, message: nil)
        let callee = TraceSpan(traceID: "t", spanID: "b", parentID: "a", name: "assess", start: 9_200_000, end: 9_700_000, function: 0,
                               status: 200, next: nil, forwardStart: nil, failedService: nil, message: nil)
        // The caller waited 0.7 ms, the callee took 0.5 ms: 0.2 ms on the network, whatever the clocks say.
        #expect(TraceTree.network(from: caller, to: callee) == 200_000)
        #expect(TraceTree.render([caller, callee]).contains { $0.contains("[network 0.200 ms] assess") })
    }
}
