import DyninkaCompiler
import DyninkaDeploy
import DyninkaSystem
import DyninkaTestbed
import Foundation
import Testing

/// The averages in "N 200 {"average":X}" lines, or in response bodies.
func averages(_ lines: [String]) -> [Double] {
    lines.compactMap { line in
        guard let range = line.range(of: #""average":"#) else { return nil }
        return Double(line[range.upperBound...].prefix { $0 != "," && $0 != "}" })
    }
}

/// `name;dur=X;fn=Y` entries of a Server-Timing header, by name.
func serverTiming(_ header: String) -> [String: (dur: Double, fn: Double)] {
    var entries: [String: (Double, Double)] = [:]
    for entry in header.split(separator: ",") {
        let fields = entry.trimmingCharacters(in: .whitespaces).split(separator: ";")
        guard let name = fields.first else { continue }
        var dur = 0.0, fn = 0.0
        for field in fields.dropFirst() {
            if field.hasPrefix("dur=") { dur = Double(field.dropFirst(4)) ?? 0 }
            if field.hasPrefix("fn=") { fn = Double(field.dropFirst(3)) ?? 0 }
        }
        entries[String(name)] = (dur, fn)
    }
    return entries
}

/// The fog test bed, for real: network namespaces, the link emulator, the app across two nodes
/// by name. Needs root (CI runs as root).
@Suite(.serialized, .enabled(if: geteuid() == 0, "the test bed needs root (network namespaces, veth links, iptables)"))
struct TestbedTests {
    /// "one way X ms (setting S ms: +P%)" of `dyninka testbed probe`.
    func probe(_ a: String, _ b: String) throws -> (oneWay: Double, error: Double, text: String) {
        let ran = try runCLI(["testbed", "probe", a, b, "--count", "40"])
        #expect(ran.status == 0, "\(ran.stderr)")
        let text = ran.stdout
        guard let way = text.range(of: "one way "), let setting = text.range(of: "ms: ") else { return (0, 100, text) }
        let oneWay = Double(text[way.upperBound...].prefix { $0 != " " }) ?? 0
        let error = Double(text[setting.upperBound...].prefix { $0 != "%" }) ?? 100
        return (oneWay, error, text)
    }

    @Test func theAppRunsAcrossNodesByNameAndTheBedLeavesNothing() throws {
        let client = Testbed.namespace(of: TestbedSpec.clientNode)
        defer { _ = try? runCLI(["testbed", "down"]) }
        let up = try runCLI(["testbed", "up", "configs/testbed/pair.json"])
        #expect(up.status == 0, "\(up.stderr)")
        #expect(up.stdout.contains("link edge-1 <-> cloud: 5 ms"))
        let seconds = up.stderr.range(of: "up in ").flatMap { Double(up.stderr[$0.upperBound...].prefix { $0 != " " }) } ?? 99
        #expect(seconds < 10, "the bed starts in a few seconds (took \(seconds) s)")

        // The emulated delay is what the link says, one way (a round trip is twice it).
        let five = try probe("edge-1", "cloud")
        #expect(abs(five.error) <= 10, "5 ms link: one way \(five.oneWay) ms: \(five.text)")
        #expect(try runCLI(["testbed", "link", "edge-1", "cloud", "--delay", "20"]).status == 0)
        let twenty = try probe("cloud", "edge-1")
        #expect(abs(twenty.error) <= 10, "20 ms link: one way \(twenty.oneWay) ms: \(twenty.text)")
        // Rate: goodput within 15% of the link's rate (TCP/IP headers take about 5%).
        #expect(try runCLI(["testbed", "link", "edge-1", "cloud", "--rate", "20"]).status == 0)
        let rate = try runCLI(["testbed", "probe", "edge-1", "cloud", "--count", "3", "--mib", "4"])
        let mbit = rate.stdout.range(of: "MiB over TCP at ").flatMap { Double(rate.stdout[$0.upperBound...].prefix { $0 != " " }) } ?? 0
        #expect(mbit > 20 * 0.85 && mbit <= 20 * 1.02, "20 Mbit/s link: \(rate.stdout) \(rate.stderr)")
        #expect(try runCLI(["testbed", "link", "edge-1", "cloud", "--delay", "5"]).status == 0)

        // The smart-building chain across the two nodes, peers found by name.
        let app = try RunningApp("examples/SmartBuilding/App.swift", extra: ["--testbed", "configs/testbed/pair.json"])
        #expect(app.nodes["get"] == "cloud" && app.nodes["filterTemperature"] == "edge-1", "\(app.nodes)")
        let entry = try #require(app.hosts["get"])
        let rows = 30
        var bodies: [String] = []
        var crossing: [Double] = []
        for _ in 0..<rows {
            let reply = try BlockingHTTP.request(host: entry, port: 8080, method: "POST", timeout: 10, namespace: client)
            #expect(reply.status == 200 || reply.status == 204, "\(reply.status) \(reply.text)")
            if reply.status == 200 { bodies.append(reply.text) }
            // get (cloud) calls filterTemperature (edge-1): its time outside its function and
            // the next hop is the link, crossed four times (connect and request, there and back).
            let timing = serverTiming(reply.headers["server-timing"] ?? "")
            if let get = timing["get"], let filter = timing["filterTemperature"] { crossing.append(get.dur - get.fn - filter.dur) }
        }
        let local = try runCLI(["run", "examples/SmartBuilding/App.swift", "--local"], environment: ["ROWS": String(rows)])
        #expect(local.status == 0, "\(local.stderr)")
        let expected = local.stdout.split(separator: "\n").compactMap { Double($0) }
        #expect(expected.count > 3)
        #expect(averages(bodies) == expected, "the bed gives the local program's results")
        let median = crossing.sorted()[crossing.count / 2]
        #expect(median >= 4 * 5 * 0.9 && median < 4 * 5 * 1.5, "the cross-node hop takes the link's delay: \(median) ms")

        // A failed node: the caller gets 502 naming the service it could not reach.
        let killed = try runCLI(["testbed", "kill", "edge-1"])
        #expect(killed.status == 0, "\(killed.stderr)")
        var failed: HTTPReply?
        for _ in 0..<10 {
            let reply = try BlockingHTTP.request(host: entry, port: 8080, method: "POST", timeout: 10, namespace: client)
            if reply.status == 502 { failed = reply; break }
        }
        let reply = try #require(failed, "a request to a dead node must fail")
        #expect(reply.text.contains("filterTemperature"), "\(reply.text)")
        // Revived, it serves again.
        #expect(try runCLI(["testbed", "revive", "edge-1"]).status == 0)
        var recovered = false
        for _ in 0..<100 where !recovered {
            usleep(100_000)
            recovered = (try? BlockingHTTP.request(host: entry, port: 8080, method: "POST", timeout: 5, namespace: client))
                .map { $0.status == 200 || $0.status == 204 } ?? false
        }
        #expect(recovered, "the revived node serves again")
        #expect(app.stop() == 0)

        // Down leaves nothing: namespaces, /etc/netns, state, processes.
        let down = try runCLI(["testbed", "down"])
        #expect(down.status == 0, "\(down.stderr)")
        #expect(Testbed.leftovers().isEmpty, "\(Testbed.leftovers())")
        let processes = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { entry in
            guard Int32(entry) != nil, let cmdline = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8) else { return false }
            return cmdline.contains("dyninka-linkemu") || (cmdline.contains("dyninka-host") && cmdline.contains("10.77."))
        }
        #expect(processes.isEmpty, "processes left: \(processes)")
    }
}

/// Service mobility on the bed: `dyninka move` under load. In the same serialized suite as the
/// rest: there is one bed.
extension TestbedTests {
    /// The smart-building app's last average after `rows` sensor rows equals the local program's:
    /// a lost or doubled update of movingAvg's state would move it.
    func expectLocalAverage(after rows: Int, is got: Double?, _ what: String) throws {
        let local = try runCLI(["run", "examples/SmartBuilding/App.swift", "--local"], environment: ["ROWS": String(rows)])
        let expected = try #require(local.stdout.split(separator: "\n").compactMap { Double($0) }.last)
        #expect(abs(try #require(got) - expected) <= 1e-9 * abs(expected), "after \(rows) rows and \(what): \(String(describing: got)) on the bed, \(expected) locally")
    }

    @Test func aServiceMovesBetweenNodesUnderLoadWithItsState() throws {
        let client = Testbed.namespace(of: TestbedSpec.clientNode)
        defer { _ = try? runCLI(["testbed", "down"]) }
        #expect(try runCLI(["testbed", "up", "configs/testbed/pair.json"]).status == 0)
        let app = try RunningApp("examples/SmartBuilding/App.swift", extra: ["--testbed", "configs/testbed/pair.json"])
        #expect(app.nodes["movingAvg"] == "cloud", "\(app.nodes)")
        let entry = try #require(app.hosts["get"])
        func post() throws -> HTTPReply { try BlockingHTTP.request(host: entry, port: 8080, method: "POST", timeout: 10, namespace: client) }

        // The state moves: sequential requests before and after a move give the local program's
        // cumulative average (a lost or doubled update would move it).
        var rows = 0
        for _ in 0..<40 { #expect([200, 204].contains(try post().status)); rows += 1 }
        let quiet = try runCLI(["move", "movingAvg", "--to", "edge-1"])
        #expect(quiet.status == 0 && quiet.stdout.contains("moved movingAvg from cloud to edge-1:")
                && quiet.stdout.contains("@Placed state restored 2 value(s)"), "\(quiet.stdout)\(quiet.stderr)")
        var last: Double?
        while (last == nil || rows < 60) && rows < 400 {
            let reply = try post()
            rows += 1
            if reply.status == 200 { last = averages([reply.text]).first }
        }
        let local = try runCLI(["run", "examples/SmartBuilding/App.swift", "--local"], environment: ["ROWS": String(rows)])
        let expected = try #require(local.stdout.split(separator: "\n").compactMap { Double($0) }.last)
        #expect(abs(try #require(last) - expected) <= 1e-9 * abs(expected), "after \(rows) rows and a move: \(String(describing: last)) on the bed, \(expected) locally")
        let status = try runCLI(["testbed", "status"])
        #expect(status.stdout.contains("runs on edge-1: service movingAvg"), "\(status.stdout)")

        // 8 clients that send half a request to movingAvg and then nothing must not make a move
        // drop the state: the old host refuses them after --handover-timeout (3 s) and hands over.
        let target = try #require(app.hosts["movingAvg"])
        let partial = try LoadLoop.partialRequests(8, host: target, port: 8080, namespace: client)
        let stalled = try runCLI(["move", "movingAvg", "--to", "cloud"])
        partial.forEach { close($0) }
        #expect(stalled.status == 0 && stalled.stdout.contains("@Placed state restored 2 value(s)"), "\(stalled.stdout)\(stalled.stderr)")
        last = nil
        while last == nil && rows < 800 {
            let reply = try post()
            rows += 1
            if reply.status == 200 { last = averages([reply.text]).first }
        }
        try expectLocalAverage(after: rows, is: last, "a move with 8 stalled clients")

        // Under load (8 threads), moving back and forth: requests keep their names and
        // addresses; none waits much longer than without a move.
        let calm = LoadLoop(port: 8080, threads: 8, host: entry, namespace: client)
        usleep(1_500_000)
        rows += calm.stop().count
        let load = LoadLoop(port: 8080, threads: 8, host: entry, namespace: client)
        usleep(700_000)
        var moves: [Ran] = []
        for node in ["edge-1", "cloud", "edge-1"] {
            moves.append(try runCLI(["move", "movingAvg", "--to", node]))
            usleep(700_000)
        }
        let statuses = load.stop()
        #expect(moves.allSatisfy { $0.status == 0 }, "\(moves.map(\.stderr))")
        let failed = statuses.filter { $0 != 200 && $0 != 204 }
        // Nothing is lost: the old host's listener closes only once the old node has refused new
        // connections and no handshake is under way, and the address moves only after the old
        // host has answered everything it took.
        #expect(statuses.count > 50, "\(statuses.count) requests")
        #expect(failed.isEmpty, "\(statuses.count) requests, failed: \(failed.prefix(10))")
        if !failed.isEmpty { print("moves under load, failed answers: \(load.failures)") }
        // A connection attempt that meets the address nowhere costs a 1 s SYN retransmission: a
        // move must never cost that. (The figures of a quiet machine are in the README; the
        // suite runs tests side by side on two cores, so this bound leaves room for them.)
        #expect(load.slowestMs < calm.slowestMs + 900, "a move held a request \(load.slowestMs) ms (\(calm.slowestMs) ms without)")
        // And the state is exact after moves under load: every row the load sent counted once.
        rows += statuses.count
        last = nil
        while last == nil && rows < statuses.count + 2000 {
            let reply = try post()
            rows += 1
            if reply.status == 200 { last = averages([reply.text]).first }
        }
        try expectLocalAverage(after: rows, is: last, "three moves under load")
        print("moves under load: slowest request \(Int(load.slowestMs)) ms (\(Int(calm.slowestMs)) ms without a move), \(statuses.count) requests, \(failed.count) failed; "
              + moves.map { $0.stdout.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(separator: "; "))

        // Moving to a node that does not exist is refused with the nodes there are.
        let nowhere = try runCLI(["move", "movingAvg", "--to", "moon"])
        #expect(nowhere.status == 1 && nowhere.stderr.contains("no node 'moon' to move to; the nodes are cloud, edge-1"), "\(nowhere.stderr)")
        #expect(app.stop() == 0)
    }
}

/// Context-aware placement on the bed: `dyninka run --adapt` moves a service next to its caller.
extension TestbedTests {
    @Test func theAdaptLoopMovesAServiceNextToItsCallerAndTheLatencyDrops() throws {
        let client = Testbed.namespace(of: TestbedSpec.clientNode)
        defer { _ = try? runCLI(["testbed", "down"]) }
        #expect(try runCLI(["testbed", "up", "configs/testbed/pair.json"]).status == 0)
        #expect(try runCLI(["testbed", "link", "edge-1", "cloud", "--delay", "20"]).status == 0)
        let log = NSTemporaryDirectory() + "dyninka-adapt-\(getpid()).log"
        defer { unlink(log) }
        let app = try RunningApp("examples/SmartBuilding/App.swift",
                                 extra: ["--testbed", "configs/testbed/pair.json", "--adapt", "--adapt-hold", "2", "--adapt-cool-down", "30"],
                                 stderrFile: log)
        // get (cloud) calls filterTemperature (edge-1), which calls map (cloud): every request
        // crosses the 20 ms link both ways.
        #expect(app.nodes["get"] == "cloud" && app.nodes["filterTemperature"] == "edge-1" && app.nodes["map"] == "cloud", "\(app.nodes)")
        let entry = try #require(app.hosts["get"])
        var before: [Double] = [], after: [Double] = []
        var failed: [Int] = []
        let until = Date().addingTimeInterval(60)
        // Before the decision is printed, between it and the end of the move (counted for
        // neither side), and after the move.
        var phase = 0
        while Date() < until, after.count < 40 {
            let started = Date()
            let reply = try BlockingHTTP.request(host: entry, port: 8080, method: "POST", timeout: 10, namespace: client)
            let ms = Date().timeIntervalSince(started) * 1000
            if reply.status != 200 && reply.status != 204 {
                failed.append(reply.status)
                print("adapt: a request failed across the move: \(reply.status) \(reply.text)")
            }
            let log = app.stderr
            if phase == 0, log.contains("adapt: moving filterTemperature") { phase = 1 }
            if phase == 1, log.contains("adapt moved filterTemperature from edge-1 to cloud") { phase = 2; continue }
            if phase == 0 { before.append(ms) } else if phase == 2 { after.append(ms) }
        }
        let decided = app.stderr
        #expect(phase == 2, "no move within 60 s: \(decided)")
        #expect(decided.contains("adapt: moving filterTemperature from edge-1 to cloud, next to its busiest caller get"), "\(decided)")
        #expect(decided.contains("ms on the network (median, threshold 5.0 ms)"), "\(decided)")
        func p50(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        try #require(before.count >= 10 && after.count >= 10, "before \(before.count), after \(after.count)")
        print(String(format: "adapt: end-to-end p50 %.1f ms before the move (%d requests), %.1f ms after (%d requests)",
                     p50(before), before.count, p50(after), after.count))
        if let moved = decided.split(separator: "\n").first(where: { $0.contains("adapt moved") }) { print(moved) }
        #expect(p50(after) < p50(before) / 3, "p50 \(p50(before)) ms before, \(p50(after)) ms after")
        #expect(failed.isEmpty, "failed: \(failed)")
        // No flapping: a few more windows, and nothing else moves.
        let end = Date().addingTimeInterval(11)
        while Date() < end { _ = try BlockingHTTP.request(host: entry, port: 8080, method: "POST", timeout: 10, namespace: client) }
        #expect(app.stderr.components(separatedBy: "adapt moved").count == 2, "\(app.stderr)")
        let status = try runCLI(["testbed", "status"])
        #expect(status.stdout.contains("runs on cloud: service filterTemperature") || status.stdout.contains("filterTemperature"), "\(status.stdout)")
        #expect(app.stop() == 0)
    }
}

/// The test bed file and the placement logic, without root.
@Suite struct TestbedFileTests {
    @Test func theShippedBedsParse() throws {
        let fog = try TestbedSpec.load("\(root)/configs/testbed/fog.json")
        #expect(fog.nodes.map(\.name) == ["cloud", "edge-1", "edge-2"])
        #expect(fog.links.count == 2 && fog.links[0].conditions == LinkConditions(delayMs: 20, jitterMs: 5))
        #expect(fog.gatewayNode == "cloud")
        #expect(try TestbedSpec.load("\(root)/configs/testbed/pair.json").links[0].conditions.delayMs == 5)
    }

    @Test(arguments: [
        ("{\"nodes\": [{\"name\": \"a\"}]\n", "bed.json:2: not valid JSON: the file ends inside an object (missing '}')"),
        ("{\n  \"nodes\": [\n    {\"name\": \"Edge_1\"}\n  ]\n}", "bed.json:3: node name \"Edge_1\" must be lowercase letters"),
        ("{\n  \"nodes\": [{\"name\": \"a\"}],\n  \"links\": [\n    {\"between\": [\"a\", \"b\"]}\n  ]\n}", "bed.json:4: link names node \"b\", which the file does not define"),
        ("{\n  \"nodes\": [{\"name\": \"a\"}, {\"name\": \"b\"}],\n  \"links\": [{\"between\": [\"a\", \"b\"],\n    \"delay_ms\": -3}]\n}", "bed.json:4: \"delay_ms\" must be a number from 0"),
        ("{\"nodes\": [{\"name\": \"a\"}], \"nodez\": 1}", "bed.json:1: unknown key \"nodez\""),
        ("{\"nodes\": [{\"name\": \"client\"}]}", "bed.json:1: \"client\" is the node the bed adds"),
    ])
    func badFilesPointAtTheLine(_ text: String, _ message: String) {
        #expect(throws: TestbedSpec.FileError.self) { try TestbedSpec.parse(text, path: "bed.json") }
        do { _ = try TestbedSpec.parse(text, path: "bed.json") } catch {
            #expect(error.description.hasPrefix(message), "\(error.description)")
        }
    }

    @Test func placementMeansWhatItMeansOnKubernetes() throws {
        let nodes = [PlacementNode(name: "cloud", labels: ["zone": "core"]), PlacementNode(name: "edge-1", labels: ["zone": "roof"]),
                     PlacementNode(name: "edge-2", labels: ["zone": "street"])]
        let services: [(name: String, placement: PlacementIR?)] = [
            ("a", nil), ("b", PlacementIR(label: "zone=roof")), ("c", PlacementIR(near: "e")), ("d", nil), ("e", PlacementIR(node: "edge-2")), ("f", nil),
        ]
        let placed = try Placement.assign(services, nodes: nodes)
        #expect(placed == ["a": "cloud", "b": "edge-1", "c": "edge-2", "e": "edge-2", "d": "cloud", "f": "edge-1"])
        // Only the edge nodes for services that ask for nothing.
        let edges = try Placement.assign(services, nodes: nodes, spread: ["edge-1", "edge-2"])
        #expect(edges["a"] != "cloud" && edges["d"] != "cloud" && edges["f"] != "cloud", "\(edges)")
        #expect(throws: PlacementFailure.self) { try Placement.assign([("x", PlacementIR(label: "zone=moon"))], nodes: nodes) }
        #expect(throws: PlacementFailure.self) { try Placement.assign([("x", PlacementIR(node: "cloud", near: "y")), ("y", PlacementIR(node: "edge-1"))], nodes: nodes) }
        #expect(throws: PlacementFailure.self) { try Placement.check([("w", PlacementIR(label: "zone=roof"))], nodes: [nodes[0]]) }
    }
}

/// What a bed, a run and a move change on the machine is put back, whatever happens in between.
extension TestbedTests {
    @Test func aBedThatCannotComeUpLeavesNothing() throws {
        defer { _ = try? runCLI(["testbed", "down"]) }
        let spec = try TestbedSpec.load("configs/testbed/pair.json")
        // An emulator that exits at once: the bed fails after its namespaces and links exist.
        var lines: [String] = []
        #expect(throws: TestbedFailure.self) { try Testbed.up(spec, file: "configs/testbed/pair.json", emulator: "/bin/false") { lines.append($0) } }
        #expect(Testbed.leftovers().isEmpty, "left behind: \(Testbed.leftovers())")
        #expect(lines.contains { $0.contains("the bed did not come up: removed what was made") }, "\(lines)")
    }

    @Test func aMoveCutShortIsRolledBack() throws {
        defer { _ = try? runCLI(["testbed", "down"]) }
        #expect(try runCLI(["testbed", "up", "configs/testbed/pair.json"]).status == 0)
        let state = try #require(Testbed.current())
        let cloud = try #require(state.node("cloud")), edge = try #require(state.node("edge-1"))
        let address = "10.77.\(cloud.index).50"
        func run(_ arguments: [String]) -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            guard (try? process.run()) != nil else { return "" }
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        _ = run(["ip", "-n", cloud.namespace, "addr", "add", "\(address)/24", "dev", "eth0"])
        // Half a move, as a run killed in the middle leaves it: the journal, the refusal rule on
        // the old node, the address on the new one too.
        let journal = Testbed.MoveJournal(service: "movingAvg", address: address, port: 8080, from: "cloud", to: "edge-1")
        try journal.write()
        try Testbed.refuseConnections(to: address, port: 8080, on: "cloud", state: state, on: true)
        try Testbed.addAddress(address, to: "edge-1", state: state)
        #expect(run(["ip", "netns", "exec", cloud.namespace, "iptables", "-S", "INPUT"]).contains(address))
        var lines: [String] = []
        #expect(Testbed.rollBackMoves(state: state) { lines.append($0) } == 1)
        #expect(!run(["ip", "netns", "exec", cloud.namespace, "iptables", "-S", "INPUT"]).contains(address), "the refusal rule is gone")
        #expect(run(["ip", "-n", cloud.namespace, "addr", "show", "dev", "eth0"]).contains(address + "/24"), "the address is home")
        #expect(!run(["ip", "-n", edge.namespace, "addr", "show", "dev", "eth0"]).contains(address), "and nowhere else")
        #expect(lines.contains { $0.contains("rolled back the move of movingAvg") })
        #expect(Testbed.rollBackMoves(state: state) { _ in } == 0, "the journal is gone")
    }
}
