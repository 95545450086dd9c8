import Foundation
import Testing

/// The fog test bed with real Kubernetes nodes: `dyninka testbed up --kubernetes` makes every
/// node of configs/testbed/fog.json a kubelet node in its namespace; `deploy --apply` builds the
/// images offline, imports them and rolls the apps; a client in the bed's `client` node calls
/// them by Service name; the links' conditions apply to pod traffic; `testbed down` leaves
/// nothing. Runs with the real-pods suites (scripts/test), after the others.
@Suite(.serialized, .enabled(if: realNodeKit != nil, "needs root and the Kubernetes kit with real nodes (scripts/test sets DYNINKA_K8S_KIT)"))
struct TestbedPodsTests {
    /// `dyninka ARGS` from the package root, through files (the bed's daemons outlive the call).
    @discardableResult
    static func cli(_ arguments: String, environment: [String: String] = [:]) throws -> String {
        try RealNodeCluster.sh("cd '\(root)' && '\(dyninka)' \(arguments)", environment: environment)
    }

    /// `kubectl` on the bed's cluster.
    static func kubectl(_ kubeconfig: String, _ arguments: String) throws -> String {
        let home = ProcessInfo.processInfo.environment["DYNINKA_K8S_HOME"] ?? NSHomeDirectory() + "/.cache/dyninka-k8s"
        return try RealNodeCluster.sh("'\(home)/venv/bin/kubectl' --kubeconfig '\(kubeconfig)' \(arguments)")
    }

    /// A request from the bed's `client` node: body and status, and the seconds it took.
    static func fromClient(_ url: String, body: String? = nil) throws -> (text: String, seconds: Double) {
        let data = body.map { " -X POST -d '\($0)'" } ?? " -X POST"
        let out = try cli("testbed exec client -- curl -s -m 20\(data) -w ' %{http_code} %{time_total}' \(url)")
        let words = out.split(separator: " ")
        return (words.dropLast().joined(separator: " "), Double(words.last ?? "") ?? -1)
    }

    /// Waits until the client gets an answer below 500 from `url` (a POST of `body` through the
    /// chain when given): each node's kube-proxy writes a new Service's rules shortly after its
    /// endpoints are ready, which is after the rollout that deploy waits for, so the first hops
    /// after a deploy may still be refused. Gives up after 30 s; the checks that follow say what
    /// is wrong.
    static func awaitService(_ url: String, body: String? = nil) {
        let deadline = Date().addingTimeInterval(30)
        let request = body.map { " -X POST -d '\($0)'" } ?? ""
        while Date() < deadline {
            let status = (try? cli("testbed exec client -- curl -s -o /dev/null -m 5 -w '%{http_code}'\(request) \(url)")) ?? ""
            if let code = Int(status), (1..<500).contains(code) { return }
            usleep(250_000)
        }
    }

    /// What hey measured: responses by status, errors, the slowest request in seconds.
    struct Load {
        var statuses: [Int: Int] = [:]
        var errors: [String] = []
        var slowest = 0.0
        var answered: Int { statuses.values.reduce(0, +) }
        /// Requests that got no answer ("[N]\tmessage" under Error distribution) or one other than 200.
        var failed: Int {
            errors.reduce(0) { $0 + (Int($1.dropFirst().prefix { $0 != "]" }) ?? 1) } + answered - statuses[200, default: 0]
        }

        init(_ report: String) {
            var inErrors = false
            for line in report.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                if line.hasPrefix("Slowest:") { slowest = Double(line.split(whereSeparator: \.isWhitespace)[1]) ?? 0 }
                if line.hasPrefix("Error distribution") { inErrors = true; continue }
                if inErrors, !line.isEmpty { errors.append(line) }
                if line.hasPrefix("["), let close = line.firstIndex(of: "]"), let code = Int(line.dropFirst().prefix(upTo: close)),
                   let count = Int(line[line.index(after: close)...].split(whereSeparator: \.isWhitespace).first ?? "") {
                    statuses[code, default: 0] += count
                }
            }
        }
    }

    /// hey from the client node: keep-alive-free POSTs for `seconds` with `workers` at once
    /// (into `file` in the background when given).
    @discardableResult
    static func load(_ url: String, seconds: Int, workers: Int = 4, into file: String? = nil) throws -> String {
        let command = "testbed exec client -- hey -z \(seconds)s -c \(workers) -disable-keepalive -m POST -t 10 \(url)"
        guard let file else { return try cli(command) }
        try RealNodeCluster.sh("cd '\(root)' && ('\(dyninka)' \(command) > '\(file)' 2>&1 &)")
        return ""
    }

    /// The report of a hey run in the background (`load(into:)`) once it is written, waiting at
    /// most 90 s.
    static func finishedReport(_ path: String) -> String {
        let deadline = Date().addingTimeInterval(90)
        var text = ""
        while Date() < deadline {
            text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            if text.contains("Status code distribution") || text.contains("Error distribution") { break }
            sleep(1)
        }
        return text
    }

    /// app -> (phase, ready, node) of each of its pods in `namespace`.
    static func pods(_ kubeconfig: String, _ namespace: String) throws -> [String: [String]] {
        let text = try kubectl(kubeconfig, "-n \(namespace) get pods -o jsonpath='{range .items[*]}{.metadata.labels.app\\.kubernetes\\.io/name} {.status.phase} {.status.containerStatuses[*].ready} {.spec.nodeName}{\"\\n\"}{end}'")
        var result: [String: [String]] = [:]
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            result[words[0]] = Array(words.dropFirst())
        }
        return result
    }

    @Test func bothExamplesAndThePlacementFixtureRunInRealPodsAcrossTheBed() throws {
        defer {
            let down = try? Self.cli("testbed down")
            #expect(down != nil, "testbed down failed")
            #expect((try? Self.cli("testbed status")) == nil, "a bed is still up")
            let left = (try? RealNodeCluster.sh("ip netns list | grep dynbed; ip link show dynbed-mgmt 2>/dev/null; pgrep -f '/run/dyninka-testbe[d]/' || true")) ?? "?"
            #expect(left.isEmpty, "left behind: \(left)")
        }
        let up = try Self.cli("testbed up configs/testbed/fog.json --kubernetes --kit '\(realNodeKit!)'")
        let kubeconfig = String(try #require(up.split(separator: "\n").last { $0.hasPrefix("kubeconfig ") }).dropFirst("kubeconfig ".count))
        let nodes = try Self.kubectl(kubeconfig, "get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.labels.zone} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}'")
        #expect(Set(nodes.split(separator: "\n")) == ["cloud core True", "edge-1 roof True", "edge-2 street True", "client  True"], "\(nodes)")
        let environment = ["KUBECONFIG": kubeconfig, "MARATHON_URL": "", "KUBERNETES_SERVICE_HOST": ""]

        // The placement fixture: each pod on the node its @Service asks for, none on `client`.
        let placed = try Self.cli("deploy Tests/Fixtures/Apps/Placement.swift --apply --namespace place", environment: environment)
        #expect(placed.contains("capture"), "\(placed)")
        let placement = try Self.pods(kubeconfig, "place")
        #expect(placement["capture"] == ["Running", "true", "edge-2"], "\(placement)")
        #expect(placement["detect"] == ["Running", "true", "edge-1"], "\(placement)")
        #expect(placement["blur"] == ["Running", "true", "edge-2"], "\(placement)")
        #expect(placement["report"]?.prefix(2) == ["Running", "true"] && placement["report"]?.last != "client", "\(placement)")
        let entry = "http://placement-capture.place:8080/"
        Self.awaitService(entry, body: "")
        #expect(try Self.fromClient(entry).text == #""gate: 2 objects" 200"#)
        // capture (edge-2) -> detect (edge-1) -> blur (edge-2): two hops over the edge-1 <-> edge-2
        // link, so its delay shows in the chain's time as it does for processes.
        let lan = (0..<3).map { _ in (try? Self.fromClient(entry).seconds) ?? -1 }.min()!
        try Self.cli("testbed link edge-1 edge-2 --delay 50")
        let slow = (0..<3).map { _ in (try? Self.fromClient(entry).seconds) ?? -1 }.min()!
        try Self.cli("testbed link edge-1 edge-2")
        #expect(lan > 0 && lan < 0.1, "LAN chain took \(lan) s")
        #expect(slow - lan > 0.3, "with 50 ms each way the chain took \(slow) s against \(lan) s on the LAN")
        try rolloutUnderLoad(environment: environment)
        let counter = NSTemporaryDirectory() + "dyninka-state-pods-\(getpid())"
        try FileManager.default.createDirectory(atPath: counter, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: counter) }
        try statefulReplacementsUnderLoad(environment: environment, kubeconfig: kubeconfig, folder: counter)

        // BuildingAlerts: the same answers as the local program (CLITests), by Service name.
        let alerts = try Self.cli("deploy examples/BuildingAlerts/App.swift --apply --namespace fog", environment: environment)
        #expect(alerts.contains("weather"), "\(alerts)")
        let alertPods = try Self.pods(kubeconfig, "fog")
        #expect(Set(alertPods.keys) == ["validate", "assess", "weather", "alert"], "\(alertPods)")
        #expect(alertPods["weather"]?.last == "edge-1", "weather asks for zone=roof: \(alertPods)")
        for (_, pod) in alertPods { #expect(pod.prefix(2) == ["Running", "true"] && pod.last != "client", "\(alertPods)") }
        let validate = "http://building-alerts-validate.fog.svc.cluster.local:8080/"
        Self.awaitService(validate, body: #"{"room":"r1","celsius":29}"#)
        #expect(try Self.fromClient(validate, body: #"{"room":"r1","celsius":29}"#).text == #"{"room":"r1","message":"room r1 is 29.0 °C with 31.5 °C outside"} 200"#)
        #expect(try Self.fromClient(validate, body: #"{"room":"r2","celsius":20}"#).text == "204")
        let faulty = try Self.fromClient(validate, body: #"{"room":"r3","celsius":99}"#).text
        #expect(faulty.hasSuffix(" 500") && faulty.contains(#""service":"validate""#) && faulty.contains("faulty"), "\(faulty)")

        // SmartBuilding with its sensor as a sidecar container in get's pod (an image built from
        // this machine's Python): the moving averages of 30 rows equal the local program's.
        let smart = try Self.cli("deploy examples/SmartBuilding/App.swift --apply --namespace sb", environment: environment)
        #expect(smart.contains("movingAvg"), "\(smart)")
        let smartPods = try Self.pods(kubeconfig, "sb")
        #expect(smartPods["get"]?.prefix(3) == ["Running", "true", "true"], "get and its sensor, both ready: \(smartPods)")
        #expect(smartPods["map"]?.last == smartPods["moving-avg"]?.last, "movingAvg is near map: \(smartPods)")
        let sensorIP = try Self.kubectl(kubeconfig, "-n sb get pods -l app.kubernetes.io/name=get -o jsonpath='{.items[0].status.podIP}'")
        // Not through the chain: a POST would move the sensor and movingAvg's state before the count.
        Self.awaitService("http://smart-building-get.sb:8080/healthz")
        _ = try Self.cli("testbed exec client -- curl -sf -m 10 http://\(sensorIP):8100/reset")
        var remote: [String] = []
        for _ in 0..<30 {
            let answer = try Self.fromClient("http://smart-building-get.sb:8080/").text
            if let range = answer.range(of: #"(?<="average":)[0-9.eE+-]+"#, options: .regularExpression) { remote.append(String(answer[range])) }
        }
        let local = try Self.cli("run examples/SmartBuilding/App.swift --local", environment: ["ROWS": "30"])
            .split(separator: "\n").filter { Double($0) != nil }.map(String.init)
        #expect(!local.isEmpty && remote == local, "local \(local), in pods \(remote)")
        try nodeLoss(kubeconfig: kubeconfig, environment: environment, counter: counter + "/Counter.swift")
    }

    /// An edited stateless stage (detect) rolls while hey sends keep-alive-free requests through
    /// the chain: readiness gates the new pod, maxUnavailable 0 keeps the old one until then, and
    /// the old host drains (it keeps accepting while every node's kube-proxy drops its endpoint,
    /// then finishes what it holds). Not one request may fail.
    func rolloutUnderLoad(environment: [String: String]) throws {
        let folder = NSTemporaryDirectory() + "dyninka-rollout-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let app = folder + "/Placement.swift"
        try FileManager.default.copyItem(atPath: root + "/Tests/Fixtures/Apps/Placement.swift", toPath: app)
        try Self.cli("deploy '\(app)' --apply --namespace roll", environment: environment)
        let entry = "http://placement-capture.roll:8080/"
        Self.awaitService(entry, body: "")
        let calm = Load(try Self.load(entry, seconds: 8))
        #expect(calm.answered > 0 && calm.statuses.keys.sorted() == [200] && calm.errors.isEmpty, "calm run: \(calm)")

        let source = try String(contentsOfFile: app, encoding: .utf8)
        try source.replacingOccurrences(of: "objects: objects + 2", with: "objects: objects + 3").write(toFile: app, atomically: true, encoding: .utf8)
        let report = folder + "/hey.txt"
        try Self.load(entry, seconds: 40, into: report)
        sleep(3)
        let rolled = try Self.cli("deploy '\(app)' --apply --namespace roll", environment: environment)
        #expect(rolled.contains("detect") && rolled.contains("rolled now"), "\(rolled)")
        let text = Self.finishedReport(report)
        let rolling = Load(text)
        #expect(rolling.answered > 0 && rolling.statuses.keys.sorted() == [200] && rolling.errors.isEmpty,
                "rollout under load: \(rolling.statuses) errors \(rolling.errors)")
        FileHandle.standardError.write(Data(String(format: "rollout under load: %d requests, %d failed; slowest %.3f s against %.3f s calm\n",
                                                   rolling.answered + rolling.failed - (rolling.answered - rolling.statuses[200, default: 0]), rolling.failed,
                                                   rolling.slowest, calm.slowest).utf8))
        #expect(try Self.fromClient(entry).text == #""gate: 3 objects" 200"#)
    }

    /// A counter whose state is @Placed on `count`: an edited count rolls, then moves to another
    /// node, each while hey sends keep-alive-free requests through the chain. The new pod takes
    /// the state from the old one over the network (signed with the app key); after each, the
    /// count equals the updates acknowledged, none failed, and the hold is measured.
    func statefulReplacementsUnderLoad(environment: [String: String], kubeconfig: String, folder: String) throws {
        let app = folder + "/Counter.swift"
        try """
            import Dyninka

            struct Tick: Codable { var n: Int }
            struct Count: Codable { var count: Int; var version: Int }

            @Placed("count") var total = 0

            @Service func tick() -> Tick { Tick(n: 1) }

            extension Tick {
                @Service func count() -> Count {
                    total += n
                    return Count(count: total, version: 1)
                }
            }

            @main struct Counter {
                static func main() { print(tick().count().count) }
            }
            """.write(toFile: app, atomically: true, encoding: .utf8)
        try Self.cli("deploy '\(app)' --apply --namespace state", environment: environment)
        let entry = "http://counter-tick.state:8080/"
        Self.awaitService(entry, body: "")
        func current() throws -> Int {
            let answer = try Self.fromClient(entry).text
            let digits = answer.range(of: #"(?<="count":)[0-9]+"#, options: .regularExpression).map { Int(answer[$0]) ?? -1 } ?? -1
            #expect(digits >= 0, "\(answer)")
            return digits
        }
        // What the replacements' slowest requests compare with: the same load with nothing replaced,
        // with count where the drain and the move find it (cloud); measured after the rollout.
        var calm = Load("")
        /// Replaces count's pod by `replace` while hey runs (it returns what the replacement said,
        /// with the new pod's words on the state); checks the count and the hold it reported.
        func replaced(_ what: String, by replace: () throws -> String) throws {
            let before = try current()
            let report = folder + "/\(what).txt"
            try Self.load(entry, seconds: 40, into: report)
            sleep(3)
            let rolled = try replace()
            #expect(rolled.contains("took over the state of count: restored 1 value(s)"), "\(what): \(rolled)")
            let text = Self.finishedReport(report)
            let load = Load(text)
            #expect(load.answered > 0 && load.statuses.keys.sorted() == [200] && load.errors.isEmpty, "\(what) under load: \(load.statuses) errors \(load.errors)")
            // Every acknowledged update counted once: the next one is before + all of them + 1.
            let after = try current()
            #expect(after == before + load.statuses[200, default: 0] + 1,
                    "\(what): count \(after) after \(before) and \(load.statuses[200, default: 0]) acknowledged updates")
            let held = rolled.range(of: #"(?<=the longest )[0-9]+(?= ms)"#, options: .regularExpression).map { Int(rolled[$0]) ?? -1 } ?? -1
            #expect(held >= 0 && held < 2000, "\(what): the longest hold \(held) ms")
            FileHandle.standardError.write(Data("\(what) of a stateful pod under load: \(load.statuses[200, default: 0]) updates acknowledged, \(load.failed) failed; the count after them \(after) (expected \(before + load.statuses[200, default: 0] + 1)); longest hold \(held) ms; slowest request \(load.slowest) s\(calm.answered > 0 ? " (calm: \(calm.slowest) s)" : "")\n".utf8))
        }
        func countNodes() throws -> [String] {
            try Self.kubectl(kubeconfig, "-n state get pods -l app.kubernetes.io/name=count -o jsonpath='{.items[*].spec.nodeName}'")
                .split(separator: " ").map(String.init)
        }
        /// Waits until count's only pod runs on `node` (the old one may still be draining, relaying).
        func settled(on node: String) throws {
            var nodes: [String] = []
            for _ in 0..<60 {
                nodes = try countNodes()
                if nodes == [node] { break }
                sleep(1)
            }
            #expect(nodes == [node], "count runs on \(nodes), expected on \(node)")
        }
        /// `kubectl drain cloud` with `dyninka guard` running: count's PodDisruptionBudget refuses
        /// the eviction until the guard has moved it off by a rollout (the hand-over), then the
        /// drain finds it gone and completes. Returns the guard's log.
        func drainCloud() throws -> String {
            let log = folder + "/guard.txt"
            try RealNodeCluster.sh("cd '\(root)' && ('\(dyninka)' guard --interval 1 --for 150 > '\(log)' 2>&1 &)",
                                   environment: environment)
            defer { _ = try? Self.kubectl(kubeconfig, "uncordon cloud") }
            let started = Date()
            _ = try Self.kubectl(kubeconfig, "drain cloud --ignore-daemonsets --delete-emptydir-data --timeout=120s")
            FileHandle.standardError.write(Data(String(format: "kubectl drain cloud took %.1f s\n", Date().timeIntervalSince(started)).utf8))
            _ = try? RealNodeCluster.sh("pkill -f '[g]uard --interval 1 --for 150' || true")
            let said = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(said.contains("node cloud is cordoned: moving state/counter-count") && said.contains("state/counter-count moved to node"), "\(said)")
            return said
        }

        let source = try String(contentsOfFile: app, encoding: .utf8)
        try source.replacingOccurrences(of: "version: 1", with: "version: 2").write(toFile: app, atomically: true, encoding: .utf8)
        // The rollout lands count on cloud (the edges take no new pods meanwhile), which is then
        // drained: only pods that may run anywhere live there, so the drain strands nothing else.
        _ = try Self.kubectl(kubeconfig, "cordon edge-1 edge-2")
        do {
            defer { _ = try? Self.kubectl(kubeconfig, "uncordon edge-1 edge-2") }
            try replaced("rollout") { try Self.cli("deploy '\(app)' --apply --namespace state", environment: environment) }
            try settled(on: "cloud")
        }
        calm = Load(try Self.load(entry, seconds: 40))
        #expect(calm.answered > 0 && calm.statuses.keys.sorted() == [200] && calm.errors.isEmpty, "calm run: \(calm.statuses) \(calm.errors)")
        FileHandle.standardError.write(Data("calm run of the counter on cloud: \(calm.statuses[200, default: 0]) updates in 40 s, slowest request \(calm.slowest) s\n".utf8))
        try replaced("drain", by: drainCloud)
        let drained = try countNodes()
        #expect(drained.count == 1 && !drained.contains("cloud"), "count's pods after the drain of cloud: \(drained)")
        // And back onto cloud, now by a deploy that says so.
        try replaced("move") { try Self.cli("deploy '\(app)' --apply --namespace state --move count --to cloud", environment: environment) }
        try settled(on: "cloud")
    }

    /// The cloud node dies (`testbed kill`: its daemons and every container, SIGKILL) while the
    /// placement chain's last stage (report, placed anywhere) runs there: a call through the chain
    /// fails fast naming report; report comes back on an edge node within the bound that the
    /// manifests' tolerations set (the node controller's 40 s grace, then 20 s); `testbed revive`
    /// brings the node back Ready.
    func nodeLoss(kubeconfig: String, environment: [String: String], counter: String) throws {
        let entry = "http://placement-capture.place:8080/"
        // The counter keeps a checkpoint of its state in a Redis server outside the cluster (in
        // the bed's client node, as a store users already run would be).
        let store = try Self.kubectl(kubeconfig, "get node client -o jsonpath='{.status.addresses[?(@.type==\"InternalIP\")].address}'")
        // In the background, as hey runs (a daemon would keep `testbed exec` waiting); stopped below.
        try RealNodeCluster.sh("cd '\(root)' && ('\(dyninka)' testbed exec client -- redis-server --port 6399 --bind 0.0.0.0 --save '' --appendonly no --protected-mode no > /dev/null 2>&1 &)")
        defer { _ = try? Self.cli("testbed exec client -- redis-cli -p 6399 shutdown nosave") }
        for _ in 0..<50 where (try? Self.cli("testbed exec client -- redis-cli -p 6399 ping"))?.contains("PONG") != true { usleep(100_000) }
        // report, and count with its checkpoint, onto cloud, for certain: the edges closed to new
        // pods while their pods are replaced.
        _ = try Self.kubectl(kubeconfig, "cordon edge-1 edge-2")
        do {
            defer { _ = try? Self.kubectl(kubeconfig, "uncordon edge-1 edge-2") }
            let deployed = try Self.cli("deploy '\(counter)' --apply --namespace state --checkpoint redis://\(store):6399/bed", environment: environment)
            #expect(deployed.contains("took over the state of count"), "\(deployed)")
            if try Self.pods(kubeconfig, "place")["report"]?.last != "cloud" {
                _ = try Self.kubectl(kubeconfig, "-n place delete pod -l app.kubernetes.io/name=report --wait=true")
                _ = try Self.kubectl(kubeconfig, "-n place rollout status deployment/placement-report --timeout=60s")
            }
        }
        let counted = "http://counter-tick.state:8080/"
        Self.awaitService(counted, body: "")
        #expect(try Self.pods(kubeconfig, "state")["count"]?.last == "cloud")
        func count() -> Int? {
            guard let answer = try? Self.fromClient(counted).text, answer.hasSuffix(" 200") else { return nil }
            return answer.range(of: #"(?<="count":)[0-9]+"#, options: .regularExpression).flatMap { Int(answer[$0]) }
        }
        let before = try #require(count())
        let report = NSTemporaryDirectory() + "dyninka-node-loss-\(getpid()).txt"
        defer { try? FileManager.default.removeItem(atPath: report) }
        try Self.load(counted, seconds: 20, into: report)
        sleep(6)
        #expect(try Self.pods(kubeconfig, "place")["report"] == ["Running", "true", "cloud"])
        Self.awaitService(entry, body: "")
        #expect(try Self.fromClient(entry).text == #""gate: 2 objects" 200"#)

        let killed = Date()
        try Self.cli("testbed kill cloud")
        // While Kubernetes still lists the dead pod, the hop to it fails and says which service.
        let failed = try Self.fromClient(entry)
        let status = failed.text.split(separator: " ").last.map(String.init) ?? ""
        #expect(["502", "503", "504"].contains(status) && failed.text.contains("'report'"),
                "the call while cloud is dead: \(failed.text)")
        #expect(failed.seconds < 5, "the failed call took \(failed.seconds) s")

        // report is replaced on an edge node; the chain answers again. (The dead pod stays listed,
        // terminating, until its node comes back: the cluster cannot know that it stopped.)
        var back: Double?
        var listed = ""
        let deadline = Date().addingTimeInterval(150)
        while Date() < deadline {
            listed = (try? Self.kubectl(kubeconfig, "-n place get pods -l app.kubernetes.io/name=report -o jsonpath='{range .items[*]}{.spec.nodeName} {.status.containerStatuses[*].ready} {.metadata.deletionTimestamp}{\"\\n\"}{end}'")) ?? ""
            let replaced = listed.split(separator: "\n").contains { $0 == "edge-1 true " || $0 == "edge-2 true " || $0 == "edge-1 true" || $0 == "edge-2 true" }
            if replaced, (try? Self.fromClient(entry).text) == #""gate: 2 objects" 200"# {
                back = Date().timeIntervalSince(killed)
                break
            }
            sleep(2)
        }
        let seconds = try #require(back, "report did not come back on an edge node within 150 s of the kill; its pods: \(listed)")
        FileHandle.standardError.write(Data(String(format: "node loss: the chain answers again %.1f s after cloud died (bound: 40 s grace + 20 s toleration + start)\n", seconds).utf8))
        #expect(seconds < 120, "report came back after \(seconds) s")

        // count came back elsewhere from its checkpoint: every update acknowledged before the
        // loss is there (those cut off by it may be too: applied and stored, never answered).
        let load = Load(Self.finishedReport(report))
        var after: Int?
        let counterBack = Date().addingTimeInterval(90)
        while after == nil && Date() < counterBack {
            after = count()
            if after == nil { sleep(2) }
        }
        let restored = try #require(after, "the counter did not answer within 90 s of report's return") - before - 1
        let acknowledged = load.statuses[200, default: 0]
        #expect(acknowledged > 0 && restored >= acknowledged && restored <= acknowledged + 4,
                "count's checkpoint after the loss of its node: \(restored) updates restored, \(acknowledged) acknowledged before it")
        let newCount = (try? Self.kubectl(kubeconfig, "-n state logs -l app.kubernetes.io/name=count -c dyninka-host --tail=100 --ignore-errors=true")) ?? ""
        #expect(newCount.contains("reading the @Placed state from the checkpoint at redis://\(store):6399/bed"), "\(newCount)")
        FileHandle.standardError.write(Data("node loss with a checkpoint: \(acknowledged) updates acknowledged before cloud died, \(restored) restored from the checkpoint (recovery point: \(max(0, acknowledged - restored)) acknowledged updates lost)\n".utf8))

        try Self.cli("testbed revive cloud")
        let ready = try Self.kubectl(kubeconfig, "get node cloud -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'")
        #expect(ready == "True", "cloud after revive: \(ready)")
    }
}
