import ArgumentParser
import DyninkaCompiler
import DyninkaDeploy
import DyninkaRunner
import DyninkaSettings
import DyninkaSystem
import DyninkaTestbed
import DyninkaView
import Foundation

extension DyninkaCommand {
    /// `dyninka run FILE`: the whole app on this machine.
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build the app and run every service on this machine, point to point.",
            discussion: """
                Starts one dyninka-host per service on 127.0.0.1 (plus the sidecars listed in \
                dyninka.json beside the file), prints `NAME URL` per service and `entry URL` (where a \
                client POSTs to run the default dataflow), and keeps them running, restarting any \
                that dies, until SIGINT or SIGTERM. With --requests N it runs the dataflow N times, \
                prints each result and a summary, and stops. With --local it runs the file as the \
                ordinary program it is, with no network. With --gateway it runs the same app in the \
                OpenFaaS-like gateway topology (for comparison); `entry` is then the gateway's \
                /function/orchestrator.

                Examples:
                  dyninka run examples/SmartBuilding/App.swift
                  dyninka run examples/SmartBuilding/App.swift --requests 20
                  ROWS=20 dyninka run examples/SmartBuilding/App.swift --local
                  dyninka run examples/SmartBuilding/App.swift --gateway --requests 20
                """)

        @Argument(help: "The app's Swift file.")
        var file: String
        @Option(help: "First port; services take consecutive ports (0: any free ports).")
        var basePort: Int = 8081
        @Option(help: "Run the default dataflow this many times, print the results, then stop.")
        var requests: Int?
        @Option(help: "Request body for --requests when main's chain starts from a value.")
        var body: String = ""
        @Flag(help: "Compile and run the file as an ordinary local program (no network).")
        var local = false
        @Flag(help: "Run the OpenFaaS-like gateway topology instead (for comparison): function instances, an orchestrator and a central gateway.")
        var gateway = false
        @OptionGroup var built: BuiltAppOptions
        @Option(help: "Run on a fog test bed (root): each service on a node, by its @Service(node:label:near:). A bed already up from this file is used as it is; otherwise the file's bed is brought up, and down again at the end.")
        var testbed: String?
        @Option(help: "With --testbed: the nodes for services that ask for no placement, comma-separated (default: all).")
        var spread: String?
        @Option(help: "Port of the live view on 127.0.0.1 (default: any free port; the address is printed as `view URL`).")
        var viewPort: Int = 0
        @Flag(help: "Serve no live view, and export no spans (unless --otlp-endpoint is given: then the hosts export there).")
        var noView = false
        @Option(help: "Also send every span to this OTLP/HTTP collector (JSON), e.g. http://127.0.0.1:4318/v1/traces: the view forwards a copy of what it receives (env DYNINKA_OTLP_ENDPOINT).")
        var otlpEndpoint: String?
        @Flag(help: "With --requests: print the trace of the last request as a tree at the end.")
        var showTrace = false
        @Flag(help: "Adapt while serving, from the hosts' spans; each decision is printed with its figures. On a test bed: move a service next to its busiest caller when the hop between them crosses nodes and its network time stays above --adapt-threshold for --adapt-hold seconds. Anywhere: fuse two services of one node into one host when their hop's network time stays above --adapt-fuse-threshold for --adapt-hold seconds, and split them again when the entry's p99 gets worse.")
        var adapt = false
        @Option(help: "With --adapt: milliseconds of network time per hop (median) between two services of one node above which they are fused (default 1).")
        var adaptFuseThreshold: Double = 1
        @Option(help: "With --adapt: milliseconds of network time per hop (median) that cost too much (default 5).")
        var adaptThreshold: Double = 5
        @Option(help: "With --adapt: seconds a hop must stay above the threshold before its callee moves (default 10).")
        var adaptHold: Double = 10
        @Option(help: "With --adapt: seconds a service that moved stays put (default 60).")
        var adaptCoolDown: Double = 60
        @Flag(help: "Hot swap: when the file is saved, check and rebuild it and replace only the services whose code changed, handing their @Placed state over, without refusing or losing a request. A file that does not compile leaves the running services as they are.")
        var watch = false

        @Option(help: "Fusion: 'auto' runs the services that share a node (all of them on this machine) in one host, which calls the next step in process with the typed value; @Service(isolated: true) keeps a service apart. 'none' (the default): one host per service.")
        var fuse: Fusion = .none

        func validate() throws {
            guard FileManager.default.fileExists(atPath: file) else { throw ValidationError("no such file: \(file)") }
            guard (0...65000).contains(basePort) else { throw ValidationError("--base-port must be 0...65000") }
            if let requests, requests < 1 { throw ValidationError("--requests must be at least 1") }
            if local && gateway { throw ValidationError("--local runs no network: it cannot be combined with --gateway") }
            if local && testbed != nil { throw ValidationError("--local runs no network: it cannot be combined with --testbed") }
            if spread != nil && testbed == nil { throw ValidationError("--spread needs --testbed") }
            if adapt && (local || gateway || noView || requests != nil) {
                throw ValidationError("--adapt changes a point-to-point app from the spans the view collects: it cannot be combined with --local, --gateway, --no-view or --requests")
            }
            if adaptThreshold <= 0 || adaptFuseThreshold <= 0 || adaptHold < 0 || adaptCoolDown < 0 {
                throw ValidationError("--adapt-threshold and --adapt-fuse-threshold must be above 0, --adapt-hold and --adapt-cool-down at least 0")
            }
            if fuse == .auto && (local || gateway) {
                throw ValidationError("--fuse auto groups point-to-point hosts: it cannot be combined with --local or --gateway")
            }
            if watch && (local || gateway || requests != nil) { throw ValidationError("--watch keeps a point-to-point app running: it cannot be combined with --local, --gateway or --requests") }
        }

        func run() throws {
            let appDirectory = URL(fileURLWithPath: file).deletingLastPathComponent().path
            let settings = try AppSettings.load(directory: appDirectory)
            if local { return try runLocal(appDirectory: appDirectory, settings: settings) }
            let build = try buildApp(file: file, out: built.out)
            let host = try orExit { try HostBinary.locate(explicit: built.hostBinary) }
            note("services run on \(host)")
            let view = noView ? nil : try orExit { try ViewServer(ir: build.ir, port: viewPort) }
            defer { view?.stop() }
            let tracing = try tracingSettings(view: view)
            defer { view?.forwarder?.stop() }
            var broughtUp = false
            defer {
                if broughtUp {
                    note("taking the test bed down")
                    _ = try? Testbed.down()
                }
            }
            let runner = try orExit {
                var bed: Testbed.State?
                if let testbed {
                    let up = try bringUpTestbed(testbed)
                    broughtUp = up.broughtUp
                    bed = up.state
                }
                return try makeRunner(build: build, host: host, appDirectory: appDirectory, settings: settings, bed: bed, tracing: tracing)
            }
            do { try runner.start() } catch {
                runner.stop()
                note("error: \(error)")
                throw ExitCode(1)
            }
            announce(runner, view: view)
            if let requests {
                let summary = runner.drive(requests: requests, body: body) { say($0) }
                say(summary.line)
                if showTrace, let view { printNewestTrace(view) }
                runner.stop()
                if summary.failed > 0 { throw ExitCode(1) }
                return
            }
            // The app keeps running with its activities until SIGINT or SIGTERM, which shuts
            // them all down, then the services.
            RunGroup(runner: runner, activities: activities(build: build, runner: runner, view: view)).run()
        }

        /// `body`'s value; an error is printed and the command exits 1.
        private func orExit<T>(_ body: () throws -> T) throws -> T {
            do { return try body() } catch {
                note("error: \(error)")
                throw ExitCode(1)
            }
        }

        /// Where the hosts send spans: to the view over OTLP/HTTP, or into its folder from test
        /// bed nodes (other network namespaces, the same files); the view forwards a copy to the
        /// user's collector, and without a view the hosts export to it themselves.
        private func tracingSettings(view: ViewServer?) throws -> HostSettings {
            var tracing = HostSettings()
            let collector = otlpEndpoint ?? ProcessInfo.processInfo.environment["DYNINKA_OTLP_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 }
            if let collector {
                let forwarder = try orExit { try SpanForwarder(url: collector) { note("spans: \($0)") } }
                if let view { view.forwarder = forwarder } else { tracing.otlpEndpoint = collector }
                note(view == nil ? "the hosts export their spans to \(collector)" : "the view forwards every span to \(collector)")
                if view == nil { forwarder.stop(flushing: 0) }
            }
            if let view {
                if testbed == nil { tracing.otlpEndpoint = view.otlpEndpoint } else { tracing.otlpFile = view.spanDirectory + "/spans.jsonl" }
            }
            return tracing
        }

        /// The runner for this machine, or for the test bed `bed`.
        private func makeRunner(build: BuildResult, host: String, appDirectory: String, settings: AppSettings, bed: Testbed.State?,
                                tracing: HostSettings) throws -> LocalRunner {
            let topology: LocalRunner.Topology = gateway ? .gateway : .pointToPoint
            if let bed {
                return try LocalRunner(ir: build.ir, library: build.library, hostBinary: host, appDirectory: appDirectory, settings: settings,
                                       bed: bed, spread: spread?.split(separator: ",").map(String.init), topology: topology, fusion: fuse,
                                       hostSettings: tracing) { note($0) }
            }
            return LocalRunner(ir: build.ir, library: build.library, hostBinary: host, basePort: basePort, appDirectory: appDirectory,
                               settings: settings, topology: topology, fusion: fuse, hostSettings: tracing) { note($0) }
        }

        /// Where everything runs (stdout, one line each, for scripts and tests) and how to reach it.
        private func announce(_ runner: LocalRunner, view: ViewServer?) {
            let nodes = runner.nodes
            for (name, url) in runner.endpoints { say(nodes[name].map { "\(name) \($0) \(url)" } ?? "\(name) \(url)") }
            if runner.bed != nil {
                for (name, node) in nodes.sorted(by: { $0.key < $1.key }) where !runner.endpoints.contains(where: { $0.name == name }) {
                    say("\(name) \(node) (sidecar)")
                }
            }
            if let view {
                view.start(runner.viewTargets)
                say("view \(view.url)")
            }
            say("entry \(runner.entryURL)")
            if let view { note("live view: \(view.url); trace a request: dyninka trace --from \(view.url) [TRACE_ID] (the newest by default)") }
            if runner.topology == .pointToPoint {
                note("clients may run main's chain at the entry; other routes and services take only the app's own signed hops (app key \(runner.appKeyPath); dyninka invoke --key-file signs with it)")
            }
            if runner.bed != nil { note("clients reach it from the bed's client node: dyninka testbed exec client -- curl -X POST \(runner.entryURL)") }
        }

        /// `--requests N --trace`: the trace of the newest request that ran the most services.
        private func printNewestTrace(_ view: ViewServer) {
            // The hosts hand spans over every 200 ms: wait until the last trace stops growing.
            var lines: [String] = []
            var previous = -1
            for _ in 0..<20 {
                usleep(250_000)
                view.refresh()
                // The newest of the traces that ran the most services (a dropped item's trace is short).
                let traces = view.spans.recentRoots(20).map { view.spans.trace($0.traceID) }
                let longest = traces.max { $0.count < $1.count }?.count ?? 0
                lines = traces.first { $0.count == longest }.map(TraceTree.render) ?? []
                if !lines.isEmpty && lines.count == previous { break }
                previous = lines.count
            }
            say("the trace of the newest request that ran the most services:")
            for line in lines { say(line) }
        }

        /// What the app does beside its services while it runs: `--watch`, and on a test bed
        /// `dyninka move`'s mailbox and `--adapt`.
        private func activities(build: BuildResult, runner: LocalRunner, view: ViewServer?) -> [any RunActivity] {
            let observer = RunView(view: view)
            var activities: [any RunActivity] = []
            if watch {
                activities.append(FileWatch(file: file, out: built.out, running: build.ir, observer: observer))
                note("watching \(file): save it to swap the services whose code changed")
            }
            if runner.topology == .pointToPoint, let view {
                var adapter: FusionAdapter?
                if adapt {
                    let policy = FusionPolicy(thresholdMs: adaptFuseThreshold, hold: adaptHold)
                    adapter = FusionAdapter(policy: policy, isolated: Set(build.ir.services.filter { $0.isolated == true }.map(\.name)),
                                            entry: build.ir.dataflow.entry)
                    note(String(format: "adapting: two services of one node are fused when their hop spends more than %.2f ms on the network for %.0f s, and split again when the entry's p99 gets %.0f%% worse",
                                adaptFuseThreshold, adaptHold, (policy.worse - 1) * 100))
                }
                activities.append(FusionActivity(adapter: adapter, view: view, observer: observer))
                note("fuse or split services while they serve: curl -X POST -H 'Content-Type: application/json' \(view.url)api/fusion -d '{\"groups\": [[\"a\", \"b\"]]}'")
            }
            if let bed = runner.bed {
                note("move a service with: dyninka move SERVICE --to NODE")
                if adapt, let view {
                    let policy = AdaptPolicy(thresholdMs: adaptThreshold, hold: adaptHold, coolDown: adaptCoolDown)
                    let adapter = Adapter(policy: policy, placements: Dictionary(uniqueKeysWithValues: build.ir.services.map { ($0.name, $0.placement) }),
                                          nodes: bed.placementNodes)
                    activities.append(AdaptActivity(adapter: adapter, view: view, observer: observer))
                    note(String(format: "adapting: a service moves next to its busiest caller when their hop spends more than %.1f ms on the network for %.0f s (cool-down %.0f s)",
                                adaptThreshold, adaptHold, adaptCoolDown))
                }
                activities.append(MoveMailbox(observer: observer))
            }
            return activities
        }

        /// The bed of `file`: the one up if it came from that file, else brought up now.
        private func bringUpTestbed(_ file: String) throws -> (state: Testbed.State, broughtUp: Bool) {
            let path = URL(fileURLWithPath: file).standardizedFileURL.path
            if let state = Testbed.current(), URL(fileURLWithPath: state.file).standardizedFileURL.path == path {
                note("using the test bed '\(state.name)' that is up")
                return (state, false)
            }
            let spec = try TestbedSpec.load(file)
            note("bringing up the test bed '\(spec.name)' from \(file)")
            return (try Testbed.up(spec, file: path, emulator: try linkEmulator()) { note($0) }, true)
        }

        private func runLocal(appDirectory: String, settings: AppSettings) throws {
            let source = try String(contentsOfFile: file, encoding: .utf8)
            let ir: AppIR
            do { ir = try Analyzer(file: file, source: source).analyze().ir } catch {
                note(error.description)
                throw ExitCode(1)
            }
            let name = ir.name
            let root = try AppBuilder.locateSourceRoot()
            let output = (built.out ?? AppBuilder.defaultOutput(for: file, name: name)) + "/local/\(name)"
            try LocalProgram(sdkDirectory: LocalProgram.executableDirectory, sourceRoot: root)
                .compile(file: file, moduleName: name, output: output)
            // The sidecars run as they would for the services; the program reaches them the same way.
            let runner = LocalRunner(ir: ir, library: "", hostBinary: "", basePort: 0, appDirectory: appDirectory, settings: settings) { note($0) }
            try runner.startSidecars()
            defer { runner.stop() }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: output)
            process.environment = ProcessInfo.processInfo.environment.merging(runner.sidecarEnvironment) { $1 }
            try process.run()
            process.waitUntilExit()
            if process.terminationStatus != 0 { throw ExitCode(process.terminationStatus) }
        }
    }
}

/// A line on standard output, written at once (print() would buffer it in a pipe).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// The terminal and the live view, as a run's activities tell them what changed.
final class RunView: RunObserver {
    let view: ViewServer?

    init(view: ViewServer?) { self.view = view }

    func announce(_ line: String) {
        note(line)
        view?.event(line)
    }

    func hostsChanged(_ runner: LocalRunner) { view?.update(runner.viewTargets) }

    func appChanged(_ ir: AppIR) { view?.adopt(ir) }
}

/// Fusion while the app serves: the changes asked through the view (`POST /api/fusion`) and,
/// with `--adapt`, every 5 s the `FusionAdapter`'s decision on the last 5 s of spans, carried out
/// by `LocalRunner.regroup`.
final class FusionActivity: RunActivity {
    let name = "fusion"
    private let adapter: FusionAdapter?
    private let view: ViewServer
    private let observer: RunView
    private var lastLook = Date()

    init(adapter: FusionAdapter?, view: ViewServer, observer: RunView) {
        self.adapter = adapter
        self.view = view
        self.observer = observer
    }

    func step(_ runner: LocalRunner) {
        for request in view.takeFusionRequests() {
            do {
                let report = try runner.regroup(request.groups)
                observer.announce("fusion: \(report)")
                observer.hostsChanged(runner)
                request.finish(ok: report.state.carried, report.description)
            } catch {
                note("error: cannot regroup \(request.groups): \(error)")
                request.finish(ok: false, "\(error)")
            }
        }
        guard let adapter, Date().timeIntervalSince(lastLook) >= 5 else { return }
        lastLook = Date()
        let since = UInt64((lastLook.timeIntervalSince1970 - 5) * 1e9)
        let (decisions, notes) = adapter.evaluate(view.spans.all.filter { $0.end >= since }, groups: runner.groups, node: runner.nodes)
        for line in notes { note("adapt: \(line)") }
        for decision in decisions {
            note("adapt: \(decision)")
            do {
                let report = try runner.regroup(decision.groups)
                observer.announce("adapt fusion: \(report)")
                observer.hostsChanged(runner)
            } catch {
                note("error: adapt cannot regroup \(decision.groups): \(error)")
            }
        }
    }
}

/// `dyninka run --adapt`: every 5 s, the last 5 s of spans the view collected go to the
/// `Adapter`, and the moves it decides are carried out (a service next to its busiest caller).
final class AdaptActivity: RunActivity {
    let name = "adapt"
    private let adapter: Adapter
    private let view: ViewServer
    private let observer: RunView
    private var lastLook = Date()

    init(adapter: Adapter, view: ViewServer, observer: RunView) {
        self.adapter = adapter
        self.view = view
        self.observer = observer
    }

    func step(_ runner: LocalRunner) {
        guard Date().timeIntervalSince(lastLook) >= 5 else { return }
        lastLook = Date()
        // The last 5 s of spans (the view follows the hosts' span files every second).
        let since = UInt64((lastLook.timeIntervalSince1970 - 5) * 1e9)
        let nodes = runner.nodes
        let down = Set(nodes.values.filter(Testbed.isDown))
        let (decisions, notes) = adapter.evaluate(view.spans.all.filter { $0.end >= since }, at: nodes, down: down)
        for line in notes { note("adapt: \(line)") }
        for decision in decisions {
            // A fused service moves with its host or not at all: the fusion loop may split it first.
            if let group = runner.groups.first(where: { $0.contains(decision.service) }), group.count > 1 {
                note("adapt: \(decision.service) would move to \(decision.to), but it runs fused with \(group.filter { $0 != decision.service }.joined(separator: ", ")): it stays")
                continue
            }
            note("adapt: \(decision)")
            do {
                let report = try runner.move(decision.service, to: decision.to)
                let line = "adapt \(report)"
                note(line)
                view.event(line + String(format: " (the hop from %@ spent %.1f ms on the network)", decision.caller, decision.medianMs))
                observer.hostsChanged(runner)
            } catch {
                note("error: adapt cannot move \(decision.service): \(error)")
            }
        }
    }
}

extension LocalRunner {
    /// Where the live view finds this run's hosts.
    var viewTargets: ViewTargets {
        var topology = self.topology == .gateway ? "gateway" : "point to point"
        if let bed { topology += " on the test bed '\(bed.name)'" }
        return ViewTargets(hosts: hosts, namespace: clientNamespace, topology: topology)
    }
}

extension Fusion: ExpressibleByArgument {}
