import DyninkaDeploy
import DyninkaSystem
import DyninkaTestbed
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Headless Chromium (Debian's `chromium`; scripts/test installs it).
let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first {
    FileManager.default.isExecutableFile(atPath: $0)
}

/// Runs headless Chromium on `url` with `arguments` (e.g. --dump-dom) after letting the page's
/// script run for 4 s of virtual time; returns what it printed.
func headless(_ url: String, _ arguments: [String]) throws -> String {
    let browser = try #require(chromium, "headless Chromium is needed: apt-get install chromium (scripts/test does)")
    let profile = NSTemporaryDirectory() + "dyninka-chromium-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    defer { try? FileManager.default.removeItem(atPath: profile) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: browser)
    process.arguments = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(profile)",
                         "--virtual-time-budget=4000", "--window-size=1500,950"] + arguments + [url]
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle(forWritingAtPath: "/dev/null")
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

/// The live view of `dyninka run`, looked at in a real browser while traffic runs.
@Suite(.serialized) struct ViewTests {
    @Test func theViewShowsTheGraphLiveRatesAndAFailure() throws {
        let app = try RunningApp("examples/BuildingAlerts/App.swift")
        defer { _ = app.stop() }
        let entry = app.port("entry")
        let view = try #require(app.urls["view"], "dyninka run printed no `view URL` line")

        // Bounded traffic: hot rooms (whole chain), cold rooms (dropped by alert) and, every tenth, a
        // faulty sensor (validate throws).
        let running = Atomic<Bool>(true)
        let faultyTrace = Mutex<String?>(nil)
        let traffic = Thread {
            var n = 0
            let until = Date().addingTimeInterval(20)
            while running.load(ordering: .relaxed), Date() < until, n < 20_000 {
                n += 1
                let body = n % 10 == 0 ? #"{"room":"1.003","celsius":500}"# : n % 2 == 0 ? #"{"room":"1.001","celsius":27}"# : #"{"room":"1.002","celsius":18}"#
                if let reply = try? BlockingHTTP.request(port: entry, method: "POST", body: body, timeout: 5), reply.status == 500 {
                    faultyTrace.withLock { $0 = reply.headers["traceresponse"].map { String($0.split(separator: "-")[1]) } }
                }
                usleep(2_000)
            }
        }
        traffic.start()
        defer { running.store(false, ordering: .relaxed) }
        // Two scrapes at least, so rates exist.
        usleep(2_500_000)

        let dom = try headless("http://127.0.0.1:\(view)/", ["--dump-dom"])
        // The graph as the file declares it, drawn by Graphviz: every service, the dependency edge.
        for service in ["validate", "weather", "assess", "alert"] {
            #expect(dom.contains("id=\"service-\(service)\""), "no node for \(service) in the drawn graph")
            #expect(dom.contains("<td>\(service)</td>"), "no row for \(service) in the services table")
        }
        #expect(dom.contains("id=\"edge-weather-assess\""), "the fan-in edge weather → assess is missing")
        #expect(dom.contains("stroke-dasharray"), "the dependency edge is not dashed")
        #expect(dom.contains("id=\"drop-alert\""), "alert's drop edge is missing")
        #expect(dom.contains("state: assessed"), "assess's @Placed state is not shown")
        // A non-zero rate on the busy edge client → validate.
        let edge = try #require(dom.range(of: "id=\"edge-client-validate\"").map { String(dom[$0.upperBound...].prefix(1500)) })
        let rate = try #require(edge.firstMatch(of: /([0-9]+\.[0-9]) req\/s/).flatMap { Double($0.1) })
        #expect(rate > 10, "the busy edge shows \(rate) req/s")
        // The failure, naming the service and its message.
        let failures = try #require(dom.range(of: "id=\"failures\"").map { String(dom[$0.upperBound...].prefix(3000)) })
        #expect(failures.contains("<td>validate</td>"), "\(failures.prefix(600))")
        #expect(failures.contains("the sensor is faulty"))
        // And a trace of a request in the list.
        #expect(dom.contains("id=\"traces\"><li><a>"), "no recent traces listed")

        // A screenshot, as a person would see it.
        let shot = NSTemporaryDirectory() + "dyninka-view-\(getpid()).png"
        defer { unlink(shot) }
        _ = try headless("http://127.0.0.1:\(view)/", ["--screenshot=\(shot)"])
        let png = try #require(FileManager.default.contents(atPath: shot))
        #expect(png.count > 20_000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "screenshot of \(png.count) bytes")

        // The failed request's trace, as `dyninka trace` shows it.
        running.store(false, ordering: .relaxed)
        let trace = try #require(faultyTrace.withLock { $0 })
        usleep(600_000)
        let shown = try runCLI(["trace", trace, "--from", "http://127.0.0.1:\(view)/"])
        #expect(shown.status == 0, "\(shown.stderr)")
        #expect(shown.stdout.contains("trace \(trace): 1 span"), "\(shown.stdout)")
        #expect(shown.stdout.contains("FAILED in validate: room 1.003 reports 500.0 °C; the sensor is faulty"), "\(shown.stdout)")
        let latest = try runCLI(["trace", "--from", "http://127.0.0.1:\(view)/"])
        #expect(latest.status == 0 && latest.stdout.hasPrefix("trace "), "\(latest.stdout)\(latest.stderr)")
        #expect(app.stop() == 0)
    }

    @Test func gatewayModeHasItsViewAndTracesToo() throws {
        let app = try RunningApp("examples/BuildingAlerts/App.swift", extra: ["--gateway"])
        defer { _ = app.stop() }
        let view = try #require(app.urls["view"])
        let gateway = app.port("gateway")
        var failedTrace: String?
        for n in 0..<60 {
            let body = n % 6 == 0 ? #"{"room":"1.003","celsius":500}"# : #"{"room":"1.001","celsius":27}"#
            let reply = try BlockingHTTP.request(port: gateway, method: "POST", path: "/function/orchestrator", body: body, timeout: 5)
            if reply.status == 500 { failedTrace = reply.headers["traceresponse"].map { String($0.split(separator: "-")[1]) } }
        }
        usleep(1_300_000)
        let state = try BlockingHTTP.request(port: view, path: "/api/state", timeout: 5)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(state.body)) as? [String: Any])
        #expect(json["topology"] as? String == "gateway")
        let names = Set((json["services"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String })
        #expect(names == ["weather", "validate", "assess", "alert", "orchestrator", "gateway"], "\(names)")
        let failures = json["failures"] as? [[String: Any]] ?? []
        #expect(failures.first?["service"] as? String == "validate" && (failures.first?["count"] as? Int ?? 0) >= 5, "\(failures)")
        // The failed request's trace: gateway → orchestrator → gateway → validate, where it failed.
        let trace = try #require(failedTrace, "the gateway passed no traceresponse on")
        let shown = try runCLI(["trace", trace, "--from", "http://127.0.0.1:\(view)/"])
        #expect(shown.status == 0, "\(shown.stderr)")
        let lines = shown.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 5 && lines[1].hasPrefix("gateway  500") && lines[2].contains("orchestrator  500")
                && lines[4].contains("validate  500") && lines[4].contains("FAILED in validate"), "\(shown.stdout)")
        #expect(app.stop() == 0)
    }

    @Test func aChainsTraceShowsEveryHopAndTheNetworkBetween() throws {
        let ran = try runCLI(["run", "examples/BuildingAlerts/App.swift", "--base-port", "0", "--requests", "3", "--body",
                              #"{"room":"1.001","celsius":27}"#, "--show-trace"])
        #expect(ran.status == 0, "\(ran.stderr)")
        let lines = ran.stdout.split(separator: "\n").map(String.init)
        let start = try #require(lines.firstIndex { $0.hasPrefix("trace ") }, "\(ran.stdout)")
        #expect(lines[start].contains(": 4 spans"), "validate, weather, assess, alert: \(lines[start])")
        let tree = lines[(start + 1)...].joined(separator: "\n")
        #expect(tree.hasPrefix("validate  200"), "\(tree)")
        #expect(tree.contains("[network "), "\(tree)")
        for hop in ["assess  200", "weather  200", "alert  200"] { #expect(tree.contains(hop), "\(tree)") }
    }
}

/// Sends `request` as it is to 127.0.0.1:`port` and returns the status line's code (0: none).
func rawStatus(port: Int, _ request: String) throws -> Int {
    guard let fd = try? BlockingHTTP.connect(port: port, timeout: 5) else { return 0 }
    defer { close(fd) }
    _ = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = recv(fd, &buffer, buffer.count, 0)
    guard n > 12 else { return 0 }
    return Int(String(decoding: buffer[9..<12], as: UTF8.self)) ?? 0
}

extension ViewTests {
    @Test func theViewRefusesOtherSitesAndSurvivesCraftedSpans() throws {
        let app = try RunningApp("examples/SmartBuilding/App.swift")
        defer { _ = app.stop() }
        let view = try #require(app.urls["view"])
        let entry = app.port("get")
        func post(_ body: String, type: String = "application/json", host: String = "127.0.0.1:\(view)", extra: String = "") throws -> Int {
            try rawStatus(port: view, "POST /v1/traces HTTP/1.1\r\nHost: \(host)\r\nContent-Type: \(type)\r\n\(extra)Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
        }
        let cyclic = #"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"c0ffee","spanId":"a","parentSpanId":"a","startTimeUnixNano":"5000","endTimeUnixNano":"1000","name":"loop"},{"traceId":"c0ffee","spanId":"a","parentSpanId":"a","startTimeUnixNano":"1","endTimeUnixNano":"2","name":"loop"}]}]}]}"#
        // A page of another site, a rebinding name, a no-cors (text/plain) POST: refused.
        #expect(try post(cyclic, type: "text/plain") == 415)
        #expect(try post(cyclic, host: "attacker.example:\(view)") == 421)
        #expect(try post(cyclic, extra: "Origin: http://attacker.example\r\n") == 403)
        #expect(try post(cyclic, extra: "Host: 127.0.0.1:\(view)\r\n") == 421, "two Host fields")
        #expect(try rawStatus(port: view, "GET /api/state HTTP/1.1\r\nHost: rebind.example:\(view)\r\n\r\n") == 421)
        // The view's own page and a host-like POST are served; crafted spans render and crash nothing.
        #expect(try post(cyclic, extra: "Origin: http://127.0.0.1:\(view)\r\n") == 200)
        let tree = try BlockingHTTP.request(port: view, path: "/api/trace/c0ffee", timeout: 10)
        #expect(tree.status == 200 && tree.text.contains("cycle"), "\(tree.status) \(tree.text)")
        #expect(try BlockingHTTP.request(port: entry, method: "POST", timeout: 10).status != 0, "the hosts still serve")
        #expect(try BlockingHTTP.request(port: view, path: "/api/state", timeout: 10).status == 200, "the view still serves")
    }

    @Test func otlpEndpointForwardsEverySpanAsStrictOTLPJSON() throws {
        let folder = NSTemporaryDirectory() + "dyninka-collector-\(getpid())"
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let receiver = Process()
        receiver.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        receiver.arguments = ["python3", root + "/Tests/Support/otlp_receiver.py", folder + "/port", folder + "/log", "90"]
        try receiver.run()
        // SIGKILL: a child of the test process may inherit SIGTERM blocked.
        defer { kill(receiver.processIdentifier, SIGKILL); receiver.waitUntilExit() }
        var port = 0
        for _ in 0..<100 where port == 0 {
            port = Int((try? String(contentsOfFile: folder + "/port", encoding: .utf8)) ?? "") ?? 0
            usleep(50_000)
        }
        try #require(port > 0, "the receiver did not start (is opentelemetry-proto installed? scripts/test installs it)")
        let ran = try runCLI(["run", "examples/SmartBuilding/App.swift", "--requests", "6", "--show-trace", "--base-port", "0"],
                             environment: ["DYNINKA_OTLP_ENDPOINT": "http://127.0.0.1:\(port)/v1/traces"])
        #expect(ran.status == 0, "\(ran.stderr)")
        #expect(ran.stderr.contains("the view forwards every span to http://127.0.0.1:\(port)/v1/traces"), "\(ran.stderr)")
        let log = (try? String(contentsOfFile: folder + "/log", encoding: .utf8)) ?? ""
        let lines = log.split(separator: "\n")
        #expect(!lines.isEmpty && lines.allSatisfy { $0.hasPrefix("ok ") }, "\(log)")
        let spans = lines.compactMap { Int($0.dropFirst(3)) }.reduce(0, +)
        // 6 requests: each runs get and filterTemperature at least.
        #expect(spans >= 12, "\(spans) spans forwarded: \(log)")
    }
}
