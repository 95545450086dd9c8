import DyninkaDeploy
import DyninkaSystem
import DyninkaTestbed
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
let binDirectory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().path
let dyninka = binDirectory + "/dyninka"

/// The result of running the CLI to completion.
struct Ran {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs `dyninka ARGS` from the package root and waits for it.
func runCLI(_ arguments: [String], environment: [String: String] = [:]) throws -> Ran {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: dyninka)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: root)
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read both pipes concurrently so neither fills up.
    let errData = Mutex<Data>(Data())
    let reader = Thread { errData.withLock { $0 = err.fileHandleForReading.readDataToEndOfFile() } }
    reader.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    while reader.isExecuting || !reader.isFinished { usleep(1000) }
    return Ran(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
               stderr: String(decoding: errData.withLock { $0 }, as: UTF8.self))
}

/// A `dyninka run` left in the foreground (supervising), with the URLs it printed.
final class RunningApp: @unchecked Sendable {
    let process = Process()
    var urls: [String: Int] = [:]
    /// The address each service listens on (127.0.0.1, or its address on a test bed node).
    var hosts: [String: String] = [:]
    /// On a test bed: the node of each service ("NAME NODE URL" lines).
    var nodes: [String: String] = [:]
    private let out = Pipe()

    /// Where its standard error goes, when asked for (`stderrFile`).
    let stderrPath: String?

    init(_ file: String, extra: [String] = [], stderrFile: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: dyninka)
        process.arguments = ["run", file, "--base-port", "0"] + extra
        process.currentDirectoryURL = URL(fileURLWithPath: root)
        process.standardOutput = out
        stderrPath = stderrFile
        if let stderrFile {
            _ = FileManager.default.createFile(atPath: stderrFile, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: stderrFile)
        }
        try process.run()
        let deadline = Date().addingTimeInterval(300)
        var line: [UInt8] = []
        var pfd = pollfd(fd: out.fileHandleForReading.fileDescriptor, events: Int16(POLLIN), revents: 0)
        while Date() < deadline {
            guard poll(&pfd, 1, 200) > 0 else {
                if !process.isRunning { break }
                continue
            }
            var c: UInt8 = 0
            guard read(pfd.fd, &c, 1) == 1 else { break }
            if c != 10 { line.append(c); continue }
            let text = String(decoding: line, as: UTF8.self)
            line.removeAll()
            let parts = text.split(separator: " ")
            if parts.count == 2 || parts.count == 3, parts.last!.hasPrefix("http://"),
               let hostPort = parts.last!.split(separator: "/").dropFirst().first,
               let port = Int(hostPort.split(separator: ":").last ?? "") {
                urls[String(parts[0])] = port
                hosts[String(parts[0])] = String(hostPort.split(separator: ":").first ?? "127.0.0.1")
                if parts.count == 3 { nodes[String(parts[0])] = String(parts[1]) }
            }
            if parts.first == "entry" { return }
        }
        throw PartialRequestError(description: "dyninka run did not print its entry URL")
    }

    func port(_ name: String) -> Int { urls[name] ?? 0 }

    /// What it wrote to standard error so far (with `stderrFile`).
    var stderr: String { stderrPath.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? "" }

    /// Waits until standard error contains `text`.
    func waitFor(_ text: String, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if stderr.contains(text) { return true }
            usleep(50_000)
        }
        return false
    }

    func stop() -> Int32 {
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// Finds the pid of the dyninka-host serving `service` on `port`.
func hostPID(service: String, port: Int) -> Int32? {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
    for entry in entries {
        guard let pid = Int32(entry), let cmdline = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(entry)/cmdline")) else { continue }
        let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        if args.contains("serve"), args.contains(service), args.contains(String(port)) { return pid }
    }
    return nil
}

@Suite(.serialized) struct CLITests {
    @Test func smartBuildingGivesTheSameMovingAveragesLocallyAndDistributed() throws {
        let rows = 60
        let local = try runCLI(["run", "examples/SmartBuilding/App.swift", "--local"], environment: ["ROWS": String(rows)])
        #expect(local.status == 0, "\(local.stderr)")
        let localAverages = local.stdout.split(separator: "\n").compactMap { Double($0) }

        let distributed = try runCLI(["run", "examples/SmartBuilding/App.swift", "--requests", String(rows), "--base-port", "0"])
        #expect(distributed.status == 0, "\(distributed.stderr)")
        // The number as the service wrote it (JSONSerialization's parse is not always exact).
        let remoteAverages = distributed.stdout.split(separator: "\n").compactMap { line -> Double? in
            guard line.contains(" 200 "), let range = line.range(of: #""average":"#) else { return nil }
            return Double(line[range.upperBound...].prefix { $0 != "," && $0 != "}" })
        }
        #expect(localAverages.count > 3, "the first \(rows) rows hold several temperatures")
        #expect(localAverages == remoteAverages)

        // The same rows through the gateway topology give the same averages.
        let gateway = try runCLI(["run", "examples/SmartBuilding/App.swift", "--gateway", "--requests", String(rows), "--base-port", "0"])
        #expect(gateway.status == 0, "\(gateway.stderr)")
        #expect(gateway.stdout.contains("/function/orchestrator"))
        let gatewayAverages = gateway.stdout.split(separator: "\n").compactMap { line -> Double? in
            guard line.contains(" 200 "), let range = line.range(of: #""average":"#) else { return nil }
            return Double(line[range.upperBound...].prefix { $0 != "," && $0 != "}" })
        }
        #expect(gatewayAverages == localAverages)

        // Fused (one host, the stages called in process with typed values): the same averages.
        let fused = try runCLI(["run", "examples/SmartBuilding/App.swift", "--fuse", "auto", "--requests", String(rows), "--base-port", "0"])
        #expect(fused.status == 0, "\(fused.stderr)")
        #expect(fused.stdout.contains("movingAvg http://127.0.0.1:"), "\(fused.stdout)")
        let fusedAverages = fused.stdout.split(separator: "\n").compactMap { line -> Double? in
            guard line.contains(" 200 "), let range = line.range(of: #""average":"#) else { return nil }
            return Double(line[range.upperBound...].prefix { $0 != "," && $0 != "}" })
        }
        #expect(fusedAverages == localAverages)
        #expect(distributed.stdout.contains("entry http://127.0.0.1:"))
        #expect(distributed.stderr.contains("services run on \(root)/.build-release-host/release/dyninka-host"), "\(distributed.stderr)")
        #expect(distributed.stdout.contains("failed 0"))
    }

    @Test func fanInErrorsAndRestartsEndToEnd() throws {
        let app = try RunningApp("examples/BuildingAlerts/App.swift")
        defer { _ = app.stop() }
        let entry = app.port("entry")
        let hot = try BlockingHTTP.request(port: entry, method: "POST", body: #"{"room":"1.001","celsius":27}"#)
        #expect(hot.status == 200, "\(hot.text)")
        #expect(hot.text.contains("31.5 °C outside"), "the weather dependency's result reached assess")
        #expect(hot.headers["server-timing"]?.contains("weather;dur=") == true)

        let cold = try BlockingHTTP.request(port: entry, method: "POST", body: #"{"room":"1.002","celsius":18}"#)
        #expect(cold.status == 204)

        let faulty = try BlockingHTTP.request(port: entry, method: "POST", body: #"{"room":"1.003","celsius":500}"#)
        #expect(faulty.status == 500)
        #expect(faulty.text.contains(#""service":"validate""#))
        #expect(faulty.text.contains(#""kind":"function""#))
        #expect(faulty.text.contains("the sensor is faulty"))

        // Kill the dependency: the failure names it, then `dyninka run` restarts it.
        let weatherPort = app.port("weather")
        let pid = try #require(hostPID(service: "weather", port: weatherPort))
        kill(pid, SIGKILL)
        usleep(20_000)
        let down = try BlockingHTTP.request(port: entry, method: "POST", body: #"{"room":"1.001","celsius":27}"#)
        if down.status == 200 {
            // The restart won the race: the answer must then come from a new weather process.
            #expect(down.text.contains("31.5 °C outside"), "\(down.text)")
            let restarted = hostPID(service: "weather", port: weatherPort)
            #expect(restarted != nil && restarted != pid, "weather answered, so a new process must serve it")
        } else {
            #expect(down.status == 502, "\(down.status) \(down.text)")
            #expect(down.text.contains(#""service":"weather""#))
            #expect(down.text.contains(#""kind":"unreachable""#))
        }
        var recovered = false
        for _ in 0..<100 where !recovered {
            usleep(100_000)
            recovered = (try? BlockingHTTP.request(port: entry, method: "POST", body: #"{"room":"1.001","celsius":27}"#).status) == 200
        }
        #expect(recovered, "weather was restarted and the chain recovered")
        let restarted = hostPID(service: "weather", port: weatherPort)
        #expect(restarted != nil && restarted != pid, "a new weather process serves after the kill")
        #expect(app.stop() == 0)
        #expect(hostPID(service: "validate", port: app.port("validate")) == nil, "children stop with dyninka run")
    }

    @Test func buildingAlertsAnswersAlikeFusedAndApart() throws {
        // 200 with the dependency's result, 204, a 500 naming validate, a 400 naming validate.
        let bodies = [#"{"room":"1.001","celsius":27}"#, #"{"room":"1.002","celsius":18}"#, #"{"room":"1.003","celsius":500}"#,
                      #"{"room":"1.004"}"#]
        var answers: [[String]] = []
        for extra in [[String](), ["--fuse", "auto"]] {
            let app = try RunningApp("examples/BuildingAlerts/App.swift", extra: extra + ["--no-view"])
            defer { _ = app.stop() }
            var these: [String] = []
            for body in bodies {
                let reply = try BlockingHTTP.request(port: app.port("entry"), method: "POST", body: body)
                let stages = (reply.headers["server-timing"] ?? "").split(separator: ",").map { $0.split(separator: ";")[0].trimmingCharacters(in: .whitespaces) }
                these.append("\(reply.status) \(reply.text) \(stages)")
            }
            answers.append(these)
        }
        #expect(answers[0] == answers[1], "apart: \(answers[0])\nfused: \(answers[1])")
        #expect(answers[1][0].hasPrefix("200 ") && answers[1][0].contains("31.5 °C outside"), "\(answers[1][0])")
        #expect(answers[1][2].hasPrefix("500 ") && answers[1][2].contains(#""service":"validate""#), "\(answers[1][2])")
    }

    @Test func aTrapInAFusedStageIsReportedAndItsGroupRestarts() throws {
        let folder = NSTemporaryDirectory() + "dyninka-trap-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = folder + "/Trap.swift"
        try """
            import Dyninka

            struct Reading: Codable { var value: Double }

            extension Reading {
                @Service func check() -> Reading {
                    if value < 0 { fatalError("a negative reading: \\(value)") }
                    return self
                }
                @Service func double() -> Reading { Reading(value: value * 2) }
                @Service(isolated: true) func report() -> Reading { self }
            }

            @main struct Trap {
                static func main() {
                    let reading = Reading(value: 1)
                    print(reading.check().double().report().value)
                }
            }
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let app = try RunningApp(file, extra: ["--fuse", "auto", "--no-view"], stderrFile: folder + "/stderr")
        defer { _ = app.stop() }
        // check and double share a host (each keeps its own port); report, isolated, has its own.
        let entry = app.port("entry")
        #expect(hostPID(service: "check,double", port: app.port("check")) != nil, "\(app.urls)")
        #expect(hostPID(service: "report", port: app.port("report")) != nil, "\(app.urls)")
        #expect(hostPID(service: "check,double", port: app.port("check")) == hostPID(service: "check,double", port: app.port("check")))
        let fine = try BlockingHTTP.request(port: entry, method: "POST", body: #"{"value":2}"#)
        #expect(fine.status == 200 && fine.text.contains("4"), "\(fine.status) \(fine.text)")
        #expect(fine.headers["server-timing"].map { $0.contains("check;") && $0.contains("double;") && $0.contains("report;") } == true)
        let pid = try #require(hostPID(service: "check,double", port: entry))
        // The trap takes the fused host down with the request; the run says so and restarts it.
        _ = try? BlockingHTTP.request(port: entry, method: "POST", body: #"{"value":-1}"#, timeout: 5)
        #expect(app.waitFor("a negative reading: -1.0", seconds: 10), "the trap's message reaches the run's output: \(app.stderr)")
        #expect(app.waitFor("check,double exited", seconds: 10), "\(app.stderr)")
        var recovered = false
        for _ in 0..<100 where !recovered {
            usleep(100_000)
            recovered = (try? BlockingHTTP.request(port: entry, method: "POST", body: #"{"value":3}"#).status) == 200
        }
        #expect(recovered, "the group was restarted and answers again")
        let restarted = hostPID(service: "check,double", port: entry)
        #expect(restarted != nil && restarted != pid, "a new process serves the group")
        #expect(app.stop() == 0)
    }

    @Test func gatewayModeRelaysErrorsAndRunsFanIn() throws {
        let app = try RunningApp("examples/BuildingAlerts/App.swift", extra: ["--gateway"])
        defer { _ = app.stop() }
        let gateway = app.port("gateway")
        #expect(gateway != 0)
        let hot = try BlockingHTTP.request(port: gateway, method: "POST", path: "/function/orchestrator", body: #"{"room":"1.001","celsius":27}"#)
        #expect(hot.status == 200, "\(hot.text)")
        #expect(hot.text.contains("31.5 °C outside"))
        let faulty = try BlockingHTTP.request(port: gateway, method: "POST", path: "/function/orchestrator", body: #"{"room":"1.003","celsius":500}"#)
        #expect(faulty.status == 500)
        #expect(faulty.text.contains(#""service":"validate""#))
        #expect(faulty.text.contains("the sensor is faulty"))
        #expect(app.stop() == 0)
    }

    @Test func buildPrintsTheLibraryAndReusesAnUnchangedBuild() throws {
        let out = NSTemporaryDirectory() + "dyninka-e2e-build-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let first = try runCLI(["build", "examples/BuildingAlerts/App.swift", "--out", out])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout == "\(out)/libBuildingAlerts.so\n")
        #expect(FileManager.default.fileExists(atPath: "\(out)/libBuildingAlerts.so"))
        #expect(FileManager.default.fileExists(atPath: "\(out)/BuildingAlerts.ir.json"))
        // Progress while the package builds in release: SwiftPM's steps, then the time it took.
        #expect(first.stderr.contains(/dyninka:   \[\d+\/\d+\] \w+.* \(\d+ s\)/), "\(first.stderr)")
        #expect(first.stderr.contains(/dyninka: built BuildingAlerts in \d+\.\d s/), "\(first.stderr)")
        let started = Date()
        let second = try runCLI(["build", "examples/BuildingAlerts/App.swift", "--out", out])
        #expect(second.status == 0)
        #expect(!second.stderr.contains("building") && !second.stderr.contains("built"), "an unchanged file is not rebuilt")
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test func badFilesFailWithLocatedErrorsAndGenerateNothing() throws {
        let dir = NSTemporaryDirectory() + "dyninka-e2e-bad-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/Bad.swift"
        try """
            import Dyninka
            struct A: Codable { var x: Int }
            struct B: Codable { var y: Int }
            @Service func first() -> A { A(x: 1) }
            extension B { @Service func second() -> B { self } }
            @main struct M { static func main() { _ = first().second() } }
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try runCLI(["build", file])
        #expect(result.status == 1)
        #expect(result.stderr.contains("\(file):6:"))
        #expect(result.stderr.contains("error: 'second' takes B but 'first' returns A"))
        #expect(result.stderr.contains("nothing was generated"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/.dyninka"))
    }

    @Test func deployDetectsItsTargetAndPrintsHowToApply() throws {
        let out = NSTemporaryDirectory() + "dyninka-e2e-deploy-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: out) }
        // MARATHON_URL in the environment means Marathon.
        let marathon = try runCLI(["deploy", "examples/BuildingAlerts/App.swift", "--out", out],
                                  environment: ["MARATHON_URL": "http://127.0.0.1:9", "KUBECONFIG": "/nonexistent", "KUBERNETES_SERVICE_HOST": ""])
        #expect(marathon.status == 0, "\(marathon.stderr)")
        #expect(marathon.stderr.contains("target: marathon (MARATHON_URL is set"))
        #expect(marathon.stdout.contains("\(out)/marathon/building-alerts.json"))
        // No cluster: --apply fails, says why, and prints the command for later.
        let kube = try runCLI(["deploy", "examples/BuildingAlerts/App.swift", "--target", "kubernetes", "--out", out, "--apply"],
                              environment: ["KUBECONFIG": "/nonexistent"])
        #expect(kube.status == 1, "\(kube.stderr)")
        #expect(kube.stderr.contains("kubectl knows no cluster") || kube.stderr.contains("kubectl is not installed"), "\(kube.stderr)")
        #expect(kube.stderr.contains("apply them later with:\n  kubectl apply --server-side -f \(out)/kubernetes"))
        #expect(kube.stderr.contains("docker build -f \(out)/Containerfile"))
        // Nothing in the environment: this machine.
        let local = try runCLI(["deploy", "examples/BuildingAlerts/App.swift", "--out", out],
                               environment: ["KUBECONFIG": "/nonexistent", "MARATHON_URL": "", "KUBERNETES_SERVICE_HOST": ""])
        #expect(local.stderr.contains("target: local"))
        #expect(local.stderr.contains("dyninka run"))
    }

    @Test func graphPrintsTheDataflow() throws {
        let dot = try runCLI(["graph", "examples/BuildingAlerts/App.swift", "--format", "dot"])
        #expect(dot.status == 0)
        #expect(dot.stdout.contains("weather -> assess [label=\"weather\", style=dashed];"))
        let json = try runCLI(["graph", "examples/SmartBuilding/App.swift", "--format", "json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["route"] as? String == "get().filterTemperature()?.map().movingAvg()")
        let bad = try runCLI(["graph", "examples/SmartBuilding/App.swift", "--format", "svg"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("--format must be mermaid, dot or json"))
    }
}

/// `dyninka run` gives its hosts an app key: clients run main's chain at the entry; anything
/// else needs the key (`dyninka invoke --key-file`).
@Suite struct AppKeyCLITests {
    @Test func onlyTheAppOrTheKeyHolderMayChooseARoute() throws {
        let log = NSTemporaryDirectory() + "dyninka-key-run-\(getpid()).log"
        defer { unlink(log) }
        let app = try RunningApp("examples/SmartBuilding/App.swift", stderrFile: log)
        defer { _ = app.stop() }
        #expect(app.waitFor("app key ", seconds: 10), "\(app.stderr)")
        let keyPath = try #require(app.stderr.components(separatedBy: "app key ").last?.split(separator: ";").first.map(String.init))
        let key = try String(contentsOfFile: keyPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(key.count == 64 && key.allSatisfy(\.isHexDigit), "a 32-byte key: \(key)")
        let attributes = try FileManager.default.attributesOfItem(atPath: keyPath)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        // main's chain from the entry: served.
        let entry = try BlockingHTTP.request(port: app.port("get"), method: "POST", timeout: 10)
        #expect([200, 204].contains(entry.status), "\(entry.status) \(entry.text)")
        // A client's own route, or a service inside the app: refused.
        let rerouted = try BlockingHTTP.request(port: app.port("get"), method: "POST", headers: [("Dyninka-Route", "map().movingAvg()")], timeout: 10)
        #expect(rerouted.status == 403, "\(rerouted.status) \(rerouted.text)")
        let url = "http://127.0.0.1:\(app.port("movingAvg"))"
        let unsigned = try runCLI(["invoke", url, "--data", #"{"value":21}"#])
        #expect(unsigned.status == 1 && unsigned.stdout.contains("takes requests only from its app's own services"), "\(unsigned.stdout)\(unsigned.stderr)")
        // With the key, a route of the user's choosing runs (here: movingAvg, then nothing).
        let signed = try runCLI(["invoke", url, "--data", #"{"value":21}"#, "--route", "", "--key-file", keyPath])
        #expect(signed.status == 0 && signed.stdout.contains("average"), "\(signed.stdout)\(signed.stderr)")
        // invoke writes every head through the writer: a route cannot add a header line.
        // (the host reads the one value "Dyninka-Route:", signed as such, and finds it no route).
        let injected = try runCLI(["invoke", url, "--data", #"{"value":21}"#, "--route", "\r\nDyninka-Route: ", "--key-file", keyPath])
        #expect(injected.status == 1 && injected.stdout.contains("bad-route") && !injected.stdout.contains("Dyninka-Auth"),
                "\(injected.stdout)\(injected.stderr)")
    }
}
