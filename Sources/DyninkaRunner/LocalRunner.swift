import DyninkaCompiler
import DyninkaSystem
import DyninkaTestbed
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A process the app needs beside its services, declared in `dyninka.json` next to the app file:
/// `{"sidecars": [{"name": "sensor", "command": ["python3", "sensor.py", "--port", "{port}"],
/// "health": "/healthz", "env": "SENSOR_URL"}]}`. `{port}` is replaced by a free port; `env`
/// names the variable that tells the services the sidecar's URL.
package struct SidecarSpec: Codable, Sendable {
    package var name: String
    /// `{port}` and `{host}` (the address to listen on) are filled in.
    package var command: [String]
    package var health: String?
    package var env: String?
    /// On a test bed: where the sidecar runs, as for `@Service(node:label:near:)`.
    package var node: String?
    package var label: String?
    package var near: String?

    var placement: PlacementIR? {
        node == nil && label == nil && near == nil ? nil : PlacementIR(node: node, label: label, near: near)
    }
}

/// Settings read from `dyninka.json` beside the app file (all optional).
package struct AppSettings: Codable, Sendable {
    package var sidecars: [SidecarSpec]?

    package init(sidecars: [SidecarSpec]? = nil) { self.sidecars = sidecars }

    /// Reads `dyninka.json` in `directory`; no file means no settings.
    package static func load(directory: String) throws -> AppSettings {
        let path = directory + "/dyninka.json"
        guard FileManager.default.fileExists(atPath: path) else { return AppSettings() }
        do {
            return try JSONDecoder().decode(AppSettings.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw RunFailure(description: "\(path) is not valid: \(error)")
        }
    }
}

/// Why `dyninka run` could not start or keep the app running.
package struct RunFailure: Error, CustomStringConvertible, Sendable {
    package var description: String
    package init(description: String) { self.description = description }
}

/// One supervised child process.
final class Child {
    let name: String
    let arguments: [String]
    let environment: [String: String]
    let port: Int
    let workingDirectory: String?
    let isService: Bool
    /// Where it listens (127.0.0.1, or its address on a test bed node).
    let host: String
    /// On a test bed: the node it runs on, and the node's network namespace.
    let node: String?
    var namespace: String? { node.map(Testbed.namespace(of:)) }
    var process: Process?
    var restarts: [Date] = []

    init(name: String, arguments: [String], environment: [String: String], port: Int, workingDirectory: String?, isService: Bool,
         host: String = "127.0.0.1", node: String? = nil) {
        self.name = name
        self.arguments = arguments
        self.environment = environment
        self.port = port
        self.workingDirectory = workingDirectory
        self.isService = isService
        self.host = host
        self.node = node
    }

    func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // `ip netns exec` enters the node's namespace (and its /etc/hosts) and then executes the
        // command in place: the process is still ours to supervise and signal.
        process.arguments = (namespace.map { ["ip", "netns", "exec", $0] } ?? []) + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.standardError
        do { try process.run() } catch {
            throw RunFailure(description: "cannot start \(name) (\(arguments.joined(separator: " "))): \(error.localizedDescription)")
        }
        self.process = process
    }

    var isRunning: Bool { process?.isRunning ?? false }
}

/// Set by the SIGINT / SIGTERM handler; read by the supervisor loop.
private let stopRequested = Atomic<Bool>(false)

/// Runs an app on this machine: one `dyninka-host serve` per service on 127.0.0.1, plus the
/// sidecars the app declares. The embedded default: no cluster, no containers.
package final class LocalRunner {
    /// The app as it runs now (`adopt` takes a rebuilt one after a hot swap).
    package private(set) var ir: AppIR
    package let hostBinary: String
    private let settings: AppSettings
    private let appDirectory: String
    private let log: (String) -> Void
    private var services: [Child] = []
    private var sidecars: [Child] = []
    /// What every host of this run is started with besides its own flags (tracing).
    private var extraHostArguments: [String] = []

    /// The topology: point to point (the default), or gateway mode for comparison.
    package enum Topology: Sendable { case pointToPoint, gateway }
    package let topology: Topology
    /// Gateway mode: the gateway and the orchestrator (also in `services`).
    private var gatewayPort = 0

    /// `basePort` 0 picks free ports; otherwise services take basePort, basePort+1, ...
    package init(ir: AppIR, library: String, hostBinary: String, basePort: Int, appDirectory: String, settings: AppSettings,
                topology: Topology = .pointToPoint, extraHostArguments: [String] = [], log: @escaping (String) -> Void) {
        self.topology = topology
        self.extraHostArguments = extraHostArguments
        self.ir = ir
        self.hostBinary = hostBinary
        self.settings = settings
        self.appDirectory = appDirectory
        self.log = log
        var sidecarEnvironment: [String: String] = [:]
        for spec in settings.sidecars ?? [] {
            let port = BlockingHTTP.freePort()
            if let env = spec.env { sidecarEnvironment[env] = "http://127.0.0.1:\(port)" }
            sidecars.append(Child(name: spec.name, arguments: spec.command.map {
                $0.replacingOccurrences(of: "{port}", with: String(port)).replacingOccurrences(of: "{host}", with: "127.0.0.1")
            },
                                  environment: [:], port: port, workingDirectory: appDirectory, isService: false))
        }
        let ports = ir.services.enumerated().map { basePort == 0 ? BlockingHTTP.freePort() : basePort + $0.offset }
        let peers = zip(ir.services, ports).map { "\($0.name)=127.0.0.1:\($1)" }.joined(separator: ",")
        if topology == .gateway {
            // Function instances, an orchestrator and the gateway in front of all of them.
            let count = ir.services.count
            let orchestratorPort = basePort == 0 ? BlockingHTTP.freePort() : basePort + count
            gatewayPort = basePort == 0 ? BlockingHTTP.freePort() : basePort + count + 1
            let common = ["--log-level", "warning", "--exit-with-parent"] + extraHostArguments
            for (service, port) in zip(ir.services, ports) {
                services.append(Child(name: service.name, arguments: [hostBinary, "gateway-mode", "function", "--app", library,
                                                                       "--service", service.name, "--port", String(port)] + common,
                                      environment: sidecarEnvironment, port: port, workingDirectory: nil, isService: true))
            }
            services.append(Child(name: "orchestrator", arguments: [hostBinary, "gateway-mode", "orchestrator", "--app", library,
                                                                     "--port", String(orchestratorPort), "--gateway", "127.0.0.1:\(gatewayPort)"] + common,
                                  environment: sidecarEnvironment, port: orchestratorPort, workingDirectory: nil, isService: true))
            services.append(Child(name: "gateway", arguments: [hostBinary, "gateway-mode", "gateway", "--port", String(gatewayPort),
                                                                "--functions", peers + ",orchestrator=127.0.0.1:\(orchestratorPort)"] + common,
                                  environment: [:], port: gatewayPort, workingDirectory: nil, isService: true))
            return
        }
        for (service, port) in zip(ir.services, ports) {
            services.append(Child(name: service.name, arguments: [hostBinary, "serve", "--app", library, "--service", service.name,
                                                                   "--port", String(port), "--peers", peers, "--log-level", "warning",
                                                                   "--exit-with-parent", "--state-out", statePath(service.name),
                                                                   "--route-file", routePath(service.name), "--app-key-file", appKeyPath]
                                                                  + extraHostArguments,
                                  environment: sidecarEnvironment, port: port, workingDirectory: nil, isService: true))
        }
    }

    /// Where services and sidecars listen on a test bed: every one has its own address on its
    /// node (as a pod has on Kubernetes) and port 8080, and the names the Kubernetes manifests use.
    package static let bedPort = 8080

    /// Runs the app on a test bed that is up: each service (and sidecar, and in gateway mode the
    /// gateway and the orchestrator, on the bed's gateway node) is placed on a node by
    /// `Placement.assign` and started inside that node's namespace, on an address of its own.
    /// Peers are found by name (`APP-SERVICE`, through the node's hosts file), as on Kubernetes.
    /// `spread`: the nodes for services that ask for no placement (default: every node).
    package init(ir: AppIR, library: String, hostBinary: String, appDirectory: String, settings: AppSettings, bed: Testbed.State,
                spread: [String]? = nil, topology: Topology = .pointToPoint, extraHostArguments: [String] = [],
                log: @escaping (String) -> Void) throws {
        self.topology = topology
        self.ir = ir
        self.hostBinary = hostBinary
        self.settings = settings
        self.appDirectory = appDirectory
        self.log = log
        self.bed = bed
        // A move a dead run left half done is taken back before anything starts on the bed.
        Testbed.rollBackMoves(state: bed, log: log)
        let app = ObjectNames.dns(ir.name)
        let sidecarSpecs = settings.sidecars ?? []
        var entities: [(name: String, placement: PlacementIR?)] = ir.services.map { ($0.name, $0.placement) }
        if topology == .gateway {
            entities += [("orchestrator", PlacementIR(node: bed.gatewayNode)), ("gateway", PlacementIR(node: bed.gatewayNode))]
        }
        entities += sidecarSpecs.map { ($0.name, $0.placement) }
        if let spread {
            for node in spread where bed.node(node) == nil || node == TestbedSpec.clientNode {
                throw RunFailure(description: "--spread names '\(node)', which is not a node services can run on (\(bed.placementNodes.map(\.name).joined(separator: ", ")))")
            }
        }
        let assignment: [String: String]
        do { assignment = try Placement.assign(entities, nodes: bed.placementNodes, spread: spread) } catch {
            throw RunFailure(description: "cannot place the app on the test bed: \(error)")
        }
        // Addresses: 10.77.K.10, .11, ... on node K, in the order above.
        var next: [String: Int] = [:]
        var addresses: [String: String] = [:]
        var hostNames: [(address: String, names: [String])] = []
        for entity in entities {
            let node = bed.node(assignment[entity.name]!)!
            let last = 10 + next[node.name, default: 0]
            next[node.name, default: 0] += 1
            let address = "10.77.\(node.index).\(last)"
            addresses[entity.name] = address
            let dns = ObjectNames.dns(entity.name)
            var names = ["\(app)-\(dns)", "\(dns).\(app)"]
            if entity.name != dns { names.append("\(entity.name).\(app)") }
            hostNames.append((address, names))
        }
        self.bedAddresses = addresses
        try Testbed.writeHosts(bed, services: hostNames)
        for (name, address) in addresses {
            let node = bed.node(assignment[name]!)!
            _ = try? Testbed.run(["ip", "-n", node.namespace, "addr", "replace", "\(address)/24", "dev", "eth0"])
        }
        let port = Self.bedPort
        var sidecarEnvironment: [String: String] = [:]
        for spec in sidecarSpecs {
            if let env = spec.env { sidecarEnvironment[env] = "http://\(app)-\(ObjectNames.dns(spec.name)):\(port)" }
            let address = addresses[spec.name]!
            sidecars.append(Child(name: spec.name, arguments: spec.command.map {
                $0.replacingOccurrences(of: "{port}", with: String(port)).replacingOccurrences(of: "{host}", with: address)
            }, environment: [:], port: port, workingDirectory: appDirectory, isService: false, host: address, node: assignment[spec.name]))
        }
        let common = ["--log-level", "warning", "--exit-with-parent"] + extraHostArguments
        func child(_ name: String, _ arguments: [String], environment: [String: String]) -> Child {
            Child(name: name, arguments: arguments, environment: environment, port: port, workingDirectory: nil, isService: true,
                  host: addresses[name]!, node: assignment[name])
        }
        if topology == .gateway {
            let functions = ir.services.map { "\($0.name)=\(app)-\(ObjectNames.dns($0.name)):\(port)" } + ["orchestrator=\(app)-orchestrator:\(port)"]
            for service in ir.services {
                services.append(child(service.name, [hostBinary, "gateway-mode", "function", "--app", library, "--service", service.name,
                                                     "--host", addresses[service.name]!, "--port", String(port)] + common,
                                      environment: sidecarEnvironment))
            }
            services.append(child("orchestrator", [hostBinary, "gateway-mode", "orchestrator", "--app", library, "--host", addresses["orchestrator"]!,
                                                   "--port", String(port), "--gateway", "\(app)-gateway:\(port)"] + common,
                                  environment: sidecarEnvironment))
            services.append(child("gateway", [hostBinary, "gateway-mode", "gateway", "--host", addresses["gateway"]!, "--port", String(port),
                                              "--functions", functions.joined(separator: ",")] + common, environment: [:]))
            gatewayPort = port
            return
        }
        var environment = sidecarEnvironment
        // The same peer template as the Kubernetes manifests: every peer by its name.
        environment["DYNINKA_PEER_TEMPLATE"] = "\(app)-{name}:\(port)"
        for service in ir.services {
            services.append(child(service.name, [hostBinary, "serve", "--app", library, "--service", service.name,
                                                 "--host", addresses[service.name]!, "--port", String(port),
                                                 "--state-out", statePath(service.name), "--route-file", routePath(service.name),
                                                 "--app-key-file", appKeyPath] + common,
                                  environment: environment))
        }
    }

    /// Where the hosts hand over @Placed state in a hot swap: a folder of this run's own.
    private let stateDirectory: String = {
        let folder = NSTemporaryDirectory() + "dyninka-state-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return folder
    }()

    func statePath(_ service: String) -> String { "\(stateDirectory)/\(service).state" }

    /// The app key of this run: 32 random bytes as hex, readable by this user only, in the run's
    /// own folder (gone with it). Every host gets it (`--app-key-file`): hops of the app sign
    /// their routes with it, and a client may run only main's chain at the entry.
    /// `dyninka invoke --key-file` signs with it too.
    package var appKeyPath: String {
        let path = "\(stateDirectory)/app.key"
        if !FileManager.default.fileExists(atPath: path) {
            var generator = SystemRandomNumberGenerator()
            let hex = (0..<4).map { _ in
                let digits = String(generator.next(), radix: 16)
                return String(repeating: "0", count: 16 - digits.count) + digits
            }.joined()
            _ = FileManager.default.createFile(atPath: path, contents: Data((hex + "\n").utf8), attributes: [.posixPermissions: 0o600])
        }
        return path
    }
    /// Where a host finds main's chain for its service when it changed after the host started.
    func routePath(_ service: String) -> String { "\(stateDirectory)/\(service).route" }

    /// Gives the running host of `name` a new default route and arguments (main's chain changed,
    /// its code did not): writes its route file and sends SIGHUP; the host checks the route
    /// against its table and takes it, or logs why not and keeps the old one. Returns the
    /// milliseconds until the host answered with the new route.
    package func reroute(_ name: String, route: String, arguments: String?) throws -> Double {
        guard topology == .pointToPoint, let child = services.first(where: { $0.name == name }), let pid = child.process?.processIdentifier else {
            throw RunFailure(description: "no point-to-point service '\(name)' to reroute")
        }
        func current() -> String? {
            guard let reply = try? BlockingHTTP.request(host: child.host, port: child.port, path: "/", timeout: 1, namespace: clientNamespace),
                  let json = try? JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any] else { return nil }
            return json["defaultRoute"] as? String
        }
        let before = current()
        let started = Date()
        let temporary = routePath(name) + ".new"
        try (route + "\n" + (arguments ?? "") + "\n").write(toFile: temporary, atomically: false, encoding: .utf8)
        _ = rename(temporary, routePath(name))
        kill(pid, SIGHUP)
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline {
            if let now = current(), now != before { return Date().timeIntervalSince(started) * 1000 }
            usleep(5_000)
        }
        throw RunFailure(description: "\(name) did not take the route '\(route)' within 3 s; its log says why")
    }

    /// What a hot swap of one service did, and how long its parts took.
    package struct SwapReport: Sendable {
        package var service: String
        /// From starting the new host to its listening on the port.
        package var startMs: Double
        /// From asking the old host to hand over until the new one had its state and served.
        package var handoverMs: Double
        /// What the new host made of the old one's state, as it reported it.
        package var state: StateOutcome
    }

    /// What a new host made of the @Placed state handed to it: its own report (`STATE.result`),
    /// never an inference.
    package struct StateOutcome: Sendable, CustomStringConvertible {
        /// The service declares @Placed state.
        package var hasState: Bool
        /// The new host restored it.
        package var restored: Bool
        /// The new host's words: "restored N value(s) (B bytes); held R request(s), the longest
        /// T ms" or "fresh CODE: why; held ...".
        package var line: String

        /// Whether the state went with the service (always true for a service without state).
        package var carried: Bool { !hasState || restored }

        package var description: String {
            guard hasState else { return "no @Placed state" }
            return restored ? "@Placed state \(line)" : "its @Placed state was NOT carried, it started \(line)"
        }

        /// Reads the new host's report at `path`, waiting while `running` for at most `timeout` seconds.
        package static func read(_ path: String, hasState: Bool, timeout: Double, running: () -> Bool) -> StateOutcome {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if let text = try? String(contentsOfFile: path, encoding: .utf8), text.hasSuffix("\n") {
                    try? FileManager.default.removeItem(atPath: path)
                    let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
                    return StateOutcome(hasState: hasState, restored: line.hasPrefix("restored "), line: line)
                }
                guard running() else { break }
                usleep(2_000)
            }
            return StateOutcome(hasState: hasState, restored: false,
                                line: running() ? "fresh unknown: the new host reported nothing within \(Int(timeout)) s"
                                                : "fresh unknown: the new host exited before it reported on its state; its log says why")
        }
    }

    /// Replaces the running host of `name` by one loading `library`, without refusing or losing a
    /// request: the new host listens on the same port (SO_REUSEPORT) and holds its requests; the
    /// old one, on SIGUSR1, stops accepting (connections waiting in its accept queue move to the
    /// new listener when net.ipv4.tcp_migrate_req is 1, which this sets when it can), finishes what
    /// it has in flight, writes its @Placed state and exits; the new one restores the state (or
    /// starts fresh when its declaration changed) and serves what it held. Point to point only.
    package func swap(_ name: String, library: String) throws -> SwapReport {
        guard topology == .pointToPoint, let index = services.firstIndex(where: { $0.name == name }) else {
            throw RunFailure(description: "no point-to-point service '\(name)' to swap")
        }
        enableRequestMigration(namespace: services[index].namespace)
        // The new library's table has main's current chain: an older route file must not override it.
        try? FileManager.default.removeItem(atPath: routePath(name))
        let (startMs, handoverMs, state) = try replace(at: index, library: library, node: services[index].node,
                                                       listeningOn: "port \(services[index].port)")
        return SwapReport(service: name, startMs: startMs, handoverMs: handoverMs, state: state)
    }

    /// The hand-over shared by `swap` and `move`: a new host like the one at `index` (loading
    /// `library` when given, on `node`) starts with `--state-in`; once it listens it takes the
    /// old one's place, and the old one gets SIGUSR1 (it writes its state as soon as no call
    /// runs, within its announced bound, relays what it has in flight and exits). Returns the
    /// milliseconds until the new host listened and until it reported on the state, and its report.
    /// `beforeHandOver` runs once the new host listens, before the old one is told to hand over.
    private func replace(at index: Int, library: String?, node: String?, listeningOn place: String, extraArguments: [String] = [],
                         beforeHandOver: (() throws -> Void)? = nil) throws -> (Double, Double, StateOutcome) {
        let old = services[index]
        let name = old.name
        var arguments = old.arguments
        for argument in extraArguments where !arguments.contains(argument) { arguments.append(argument) }
        if let library, let app = arguments.firstIndex(of: "--app") { arguments[app + 1] = library }
        if let at = arguments.firstIndex(of: "--state-in") { arguments.removeSubrange(at...(at + 1)) }
        // A service added since the host started is among its peers now (local runs list them all).
        if bed == nil, let at = arguments.firstIndex(of: "--peers") { arguments[at + 1] = peerList() }
        arguments += ["--state-in", statePath(name)]
        for suffix in ["", ".handover", ".result"] { try? FileManager.default.removeItem(atPath: statePath(name) + suffix) }
        let replacement = Child(name: name, arguments: arguments, environment: old.environment, port: old.port, workingDirectory: old.workingDirectory,
                                isService: true, host: old.host, node: node)
        let started = Date()
        try replacement.start()
        // Listening: its own socket on the port, seen through its network namespace.
        let deadline = Date().addingTimeInterval(15)
        while !Self.listens(pid: replacement.process!.processIdentifier, port: old.port) {
            guard replacement.isRunning, Date() < deadline else {
                if replacement.isRunning { kill(replacement.process!.processIdentifier, SIGKILL) }
                throw RunFailure(description: "the new \(name) did not start listening on \(place) within 15 s; the old one keeps serving")
            }
            usleep(2_000)
        }
        let listening = Date()
        if let beforeHandOver {
            do { try beforeHandOver() } catch {
                kill(replacement.process!.processIdentifier, SIGKILL)
                throw error
            }
        }
        services[index] = replacement
        if let pid = old.process?.processIdentifier { kill(pid, SIGUSR1) }
        // The new host reports within --state-wait, or within the bound the old one announced
        // (--handover-timeout, plus --response-timeout for an async service) and a second.
        let hasState = !(ir.services.first { $0.name == name }?.placedState.isEmpty ?? true)
        let state = StateOutcome.read(statePath(name) + ".result", hasState: hasState, timeout: 60) { replacement.isRunning }
        let handoverMs = Date().timeIntervalSince(listening) * 1000
        // Then the old one relays what it still has (its --drain-timeout bounds that); the state
        // is with the new host already, so ending it later costs no update.
        let exitDeadline = Date().addingTimeInterval(40)
        while old.isRunning && Date() < exitDeadline { usleep(1_000) }
        if old.isRunning, let pid = old.process?.processIdentifier {
            log("the old \(name) still relayed answers 40 s after the hand-over: stopped (SIGKILL)")
            kill(pid, SIGKILL)
        }
        return (listening.timeIntervalSince(started) * 1000, handoverMs, state)
    }

    /// Takes the rebuilt app as the one running (after `--watch` swapped, added or removed what
    /// changed): its entry is where clients post.
    package func adopt(_ ir: AppIR) { self.ir = ir }

    /// Every service's address, as `--peers` gives them on a local run.
    private func peerList() -> String {
        services.filter(\.isService).map { "\($0.name)=\($0.host):\($0.port)" }.joined(separator: ",")
    }

    /// Starts a host for a service the file gained while running (a local, point-to-point run),
    /// on a free port, and waits until it answers. The hosts that call it learn its address when
    /// they are swapped for the new code that calls it. Returns the milliseconds it took.
    package func add(_ name: String, library: String) throws -> Double {
        guard topology == .pointToPoint, bed == nil else {
            throw RunFailure(description: "services can be added while running only on this machine, point to point; restart dyninka run for '\(name)'")
        }
        guard !services.contains(where: { $0.name == name }) else { throw RunFailure(description: "'\(name)' runs already") }
        let started = Date()
        let port = BlockingHTTP.freePort()
        let environment = services.first(where: \.isService)?.environment ?? [:]
        let child = Child(name: name, arguments: [hostBinary, "serve", "--app", library, "--service", name, "--port", String(port),
                                                 "--peers", peerList() + ",\(name)=127.0.0.1:\(port)", "--log-level", "warning",
                                                 "--exit-with-parent", "--state-out", statePath(name), "--route-file", routePath(name),
                                                 "--app-key-file", appKeyPath]
                              + extraHostArguments,
                          environment: environment, port: port, workingDirectory: nil, isService: true)
        services.append(child)
        do {
            try child.start()
            try waitHealthy(child, path: "/healthz")
        } catch {
            services.removeLast()
            if child.isRunning, let pid = child.process?.processIdentifier { kill(pid, SIGKILL) }
            throw error
        }
        return Date().timeIntervalSince(started) * 1000
    }

    /// Stops the host of a service the file no longer has: it drains (SIGTERM) and exits.
    package func remove(_ name: String) {
        guard let index = services.firstIndex(where: { $0.name == name }) else { return }
        let child = services.remove(at: index)
        guard child.isRunning, let pid = child.process?.processIdentifier else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while child.isRunning && Date() < deadline { usleep(5_000) }
        if child.isRunning { kill(pid, SIGKILL) }
        child.process?.waitUntilExit()
        try? FileManager.default.removeItem(atPath: routePath(name))
    }

    /// What a move of one service did, and how long its parts took.
    package struct MoveReport: Sendable, CustomStringConvertible {
        package var service: String
        package var from: String
        package var to: String
        package var startMs: Double
        package var handoverMs: Double
        /// Of the hand-over: until the old node refused new connections and had no handshake
        /// under way.
        package var settleMs: Double
        package var addressMs: Double
        /// What the new host made of the old one's state, as it reported it.
        package var state: StateOutcome

        /// "moved S from A to B: ..." with the time of each part and the state's outcome.
        package var description: String {
            String(format: "moved %@ from %@ to %@: new host listening in %.0f ms, hand-over %.0f ms (%.0f ms of it settling the old node's handshakes), address moved in %.0f ms; %@",
                   service, from, to, startMs, handoverMs, settleMs, addressMs, state.description)
        }
    }

    /// Moves a service to another node of the test bed with its @Placed state, under load:
    /// the new host starts on the new node, listening on the service's own address before the
    /// node has it (IP_FREEBIND: nothing reaches it yet, and the node's own callers still reach
    /// the old one); the old node refuses new connections, the old one hands over as in `swap`,
    /// and then the address moves (`Testbed.addAddress`, `Testbed.switchAddress`). Callers keep
    /// the name and the address; a connection they open in between is refused and retried (the
    /// hosts' --connect-retry).
    package func move(_ name: String, to node: String) throws -> MoveReport {
        guard let bed else { throw RunFailure(description: "moving a service needs a test bed (dyninka run --testbed)") }
        guard topology == .pointToPoint, let index = services.firstIndex(where: { $0.name == name }) else {
            throw RunFailure(description: "no point-to-point service '\(name)'; the services are \(services.map(\.name).joined(separator: ", "))")
        }
        guard bed.node(node) != nil, node != TestbedSpec.clientNode else {
            throw RunFailure(description: "no node '\(node)' to move to; the nodes are \(bed.placementNodes.map(\.name).joined(separator: ", "))")
        }
        let old = services[index]
        guard let from = old.node, from != node else { throw RunFailure(description: "\(name) already runs on \(node)") }
        // The address moves last, once the old host has finished every connection it had. Giving
        // it to the new node any earlier would break the old host's connections with callers on
        // that node (their packets would stay there, and be reset).
        // The old host's listener must not close with a connection in it: closing resets both
        // the ones in its accept queue and the handshakes whose request has not come yet
        // (TCP_DEFER_ACCEPT keeps those as SYN_RECV), and their callers already saw them
        // connected. So the old node refuses new connections first (callers try again every
        // 5 ms), the runner waits until no handshake to the address is under way, and only then
        // does the old host take what its queue holds, close the listener and serve what it took.
        var refusing = false
        var settleMs = 0.0
        // Written down first: should this process die in the middle, the next run (or `testbed
        // up`) takes the rule and the half-moved address back (`Testbed.rollBackMoves`).
        let journal = Testbed.MoveJournal(service: name, address: old.host, port: old.port, from: from, to: node)
        try journal.write()
        var switched = false
        defer {
            if refusing { try? Testbed.refuseConnections(to: old.host, port: old.port, on: from, state: bed, on: false) }
            if !switched { journal.rollBack(state: bed, log: log) }
            journal.remove()
        }
        let (startMs, handoverMs, state) = try replace(at: index, library: nil, node: node, listeningOn: node, extraArguments: ["--free-bind"]) {
            let settling = Date()
            try Testbed.refuseConnections(to: old.host, port: old.port, on: from, state: bed, on: true)
            refusing = true
            guard let pid = old.process?.processIdentifier else { return }
            let deadline = Date().addingTimeInterval(Self.handshakeWait)
            while Self.handshakes(pid: pid, address: old.host, port: old.port) > 0 && Date() < deadline { usleep(500) }
            settleMs = Date().timeIntervalSince(settling) * 1000
        }
        let switching = Date()
        try Testbed.addAddress(old.host, to: node, state: bed)
        try Testbed.switchAddress(old.host, from: from, to: node, state: bed)
        switched = true
        let addressMs = Date().timeIntervalSince(switching) * 1000
        return MoveReport(service: name, from: from, to: node, startMs: startMs, handoverMs: handoverMs, settleMs: settleMs, addressMs: addressMs,
                          state: state)
    }

    /// Lets a listener that closes pass the connections waiting in its accept queue to another
    /// listener on the port (Linux 5.14+), so that a swap refuses nothing. Needs root; per
    /// namespace. The value found first is put back when the run stops (`restoreSysctls`).
    private func enableRequestMigration(namespace: String?) {
        let key = namespace ?? ""
        let prefix = namespace.map { ["ip", "netns", "exec", $0] } ?? []
        if changedSysctls[key] == nil {
            guard let read = try? Command.run("/usr/bin/env", prefix + ["sysctl", "-n", "net.ipv4.tcp_migrate_req"]), read.status == 0 else { return warnMigration() }
            let original = read.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            if original == "1" { return }
            changedSysctls[key] = original
        }
        if (try? Command.run("/usr/bin/env", prefix + ["sysctl", "-q", "-w", "net.ipv4.tcp_migrate_req=1"]))?.status != 0 {
            changedSysctls[key] = nil
            warnMigration()
        }
    }
    private func warnMigration() {
        guard !migrationWarned else { return }
        migrationWarned = true
        log("cannot set net.ipv4.tcp_migrate_req=1 (not root?): a swap may refuse the few connections waiting in the old host's accept queue")
    }
    private var migrationWarned = false
    /// Sysctls this run changed, by namespace ("": the machine's own), with their first value.
    private var changedSysctls: [String: String] = [:]

    /// Puts back what `enableRequestMigration` changed (a namespace that is gone has nothing to restore).
    private func restoreSysctls() {
        for (namespace, original) in changedSysctls {
            let prefix = namespace.isEmpty ? [] : ["ip", "netns", "exec", namespace]
            _ = try? Command.run("/usr/bin/env", prefix + ["sysctl", "-q", "-w", "net.ipv4.tcp_migrate_req=\(original)"])
        }
        changedSysctls.removeAll()
    }

    /// A /proc file read to its end (they report size 0, and may be long: a busy machine has
    /// tens of thousands of sockets in TIME_WAIT).
    static func readWhole(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// A /proc file's bytes, read to its end.
    static func readBytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // Read straight into the array, doubling it as needed (no per-chunk copy).
        var bytes = [UInt8](repeating: 0, count: 1 << 18)
        var filled = 0
        while true {
            if filled == bytes.count { bytes += [UInt8](repeating: 0, count: bytes.count) }
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n <= 0 { break }
            filled += n
        }
        bytes.removeSubrange(filled...)
        return bytes
    }

    /// Longest a move waits for the handshakes under way to its address to complete (s); a
    /// handshake still open after it is one whose client stopped answering.
    static let handshakeWait = 1.0

    /// Handshakes to `address:port` under way in `pid`'s network namespace: SYN_RECV entries
    /// (including connections TCP_DEFER_ACCEPT holds until their first bytes). The table may
    /// have tens of thousands of lines (TIME_WAIT), so its bytes are searched, not split.
    static func handshakes(pid: Int32, address: String, port: Int) -> Int {
        readBytes("/proc/\(pid)/net/tcp").map { handshakes(in: $0, address: address, port: port) } ?? 0
    }

    /// The SYN_RECV entries for `address:port` in the text of a /proc/net/tcp table.
    static func handshakes(in table: [UInt8], address: String, port: Int) -> Int {
        guard let local = procAddress(address, port: port) else { return 0 }
        // A line: "  sl: LOCAL REMOTE ST ...", each address 13 characters ("0A014D0A:1F90").
        // strstr on the text ended by a NUL: the dyninka CLI is a debug build, where a byte loop
        // in Swift would take milliseconds on a long table.
        let needle = ": " + local + " "
        let text = table + [0]
        var count = 0
        text.withUnsafeBufferPointer { bytes in
            let base = UnsafeRawPointer(bytes.baseAddress!).assumingMemoryBound(to: CChar.self)
            var at = 0
            while at < bytes.count - 1, let found = strstr(base + at, needle) {
                let state = UnsafePointer(found) - base + needle.utf8.count + 14
                guard state + 2 < bytes.count else { break }
                if bytes[state] == UInt8(ascii: "0") && bytes[state + 1] == UInt8(ascii: "3") { count += 1 }
                at = state
            }
        }
        return count
    }

    /// How /proc/net/tcp writes an IPv4 address and port: the address as the hex of its
    /// 32-bit value in host order (little-endian here: the bytes reversed), the port in hex.
    static func procAddress(_ address: String, port: Int) -> String? {
        let bytes = address.split(separator: ".").compactMap { UInt8($0) }
        guard bytes.count == 4 else { return nil }
        let value = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
        let hex = String(UInt32(littleEndian: value), radix: 16, uppercase: true)
        let portHex = String(port, radix: 16, uppercase: true)
        return String(repeating: "0", count: 8 - hex.count) + hex + ":" + String(repeating: "0", count: max(0, 4 - portHex.count)) + portHex
    }

    /// Whether `pid` holds a listening TCP socket on `port` (read from /proc, in its namespace).
    static func listens(pid: Int32, port: Int) -> Bool {
        var inodes = Set<String>()
        for table in ["tcp", "tcp6"] {
            guard let text = readWhole("/proc/\(pid)/net/\(table)") else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                guard fields.count > 9, fields[3] == "0A", let colon = fields[1].lastIndex(of: ":"),
                      Int(fields[1][fields[1].index(after: colon)...], radix: 16) == port else { continue }
                inodes.insert(String(fields[9]))
            }
        }
        guard !inodes.isEmpty, let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { return false }
        for fd in fds {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
               target.hasPrefix("socket:["), inodes.contains(String(target.dropFirst(8).dropLast())) { return true }
        }
        return false
    }

    /// On a test bed: the bed, and every service's and sidecar's address.
    package private(set) var bed: Testbed.State?
    private var bedAddresses: [String: String] = [:]

    /// The node each service and sidecar runs on (test bed), by name.
    package var nodes: [String: String] {
        var nodes: [String: String] = [:]
        for child in services + sidecars { if let node = child.node { nodes[child.name] = node } }
        return nodes
    }

    /// Where a client runs requests from: the bed's client node, or this machine.
    package var clientNamespace: String? { bed.map { _ in Testbed.namespace(of: TestbedSpec.clientNode) } }

    /// The environment a local program needs to reach the sidecars (their URLs).
    package var sidecarEnvironment: [String: String] {
        var environment: [String: String] = [:]
        for (spec, child) in zip(settings.sidecars ?? [], sidecars) {
            if let env = spec.env { environment[env] = "http://\(child.host):\(child.port)" }
        }
        return environment
    }

    /// Every host process, with where it listens and its node (test bed): the live view scrapes
    /// their /metrics.
    package var hosts: [(name: String, host: String, port: Int, node: String?)] { services.map { ($0.name, $0.host, $0.port, $0.node) } }

    /// Where each service listens, in table order.
    package var endpoints: [(name: String, url: String)] { services.map { ($0.name, "http://\($0.host):\($0.port)") } }

    /// Where a client posts to run the default dataflow.
    package var entryURL: String {
        let child = entryChild
        let base = "http://\(child?.host ?? "127.0.0.1"):\(entry.port)"
        return entry.path == "/" ? base : base + entry.path
    }

    var entryChild: Child? {
        services.first { $0.name == (topology == .gateway ? "gateway" : ir.dataflow.entry) }
    }

    /// The entry's port and path: the entry service, or the gateway's /function/orchestrator.
    package var entry: (port: Int, path: String) {
        if topology == .gateway { return (gatewayPort, "/function/orchestrator") }
        return (services.first { $0.name == ir.dataflow.entry }?.port ?? 0, "/")
    }

    /// Starts the sidecars only (for `--local`, where the program itself plays the services).
    package func startSidecars() throws {
        for child in sidecars {
            try child.start()
            try waitHealthy(child, path: (settings.sidecars ?? []).first { $0.name == child.name }?.health)
        }
    }

    /// Starts sidecars and services and waits until each answers.
    package func start() throws {
        installSignalHandlers()
        try startSidecars()
        for child in services { try child.start() }
        for child in services { try waitHealthy(child, path: "/healthz") }
    }

    private func waitHealthy(_ child: Child, path: String?) throws {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            guard child.isRunning else {
                throw RunFailure(description: "\(child.name) exited during startup (status \(child.process?.terminationStatus ?? -1)); its messages are above")
            }
            guard let path else { usleep(200_000); return }
            if let reply = try? BlockingHTTP.request(host: child.host, port: child.port, path: path, timeout: 1, namespace: clientNamespace),
               reply.status == 200 { return }
            usleep(50_000)
        }
        throw RunFailure(description: "\(child.name) did not answer on \(child.host):\(child.port)\(path ?? "")\(child.node.map { " (node \($0))" } ?? "") within 15 s")
    }

    /// Totals of `drive`.
    package struct Summary: Sendable {
        package var ok = 0, dropped = 0, failed = 0
        package var latencies: [Double] = []
        package var line: String {
            let sorted = latencies.sorted()
            func p(_ q: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
            let mean = sorted.isEmpty ? 0 : sorted.reduce(0, +) / Double(sorted.count)
            return String(format: "ok %d, dropped %d, failed %d; latency mean %.2f ms, p50 %.2f ms, p99 %.2f ms",
                          ok, dropped, failed, mean, p(0.5), p(0.99))
        }
    }

    /// Runs the default dataflow `count` times, one request after another, printing each result.
    package func drive(requests count: Int, body: String, print emit: (String) -> Void) -> Summary {
        var summary = Summary()
        let (port, path) = entry
        let host = entryChild?.host ?? "127.0.0.1"
        for n in 1...max(count, 1) {
            let started = Date()
            do {
                let reply = try BlockingHTTP.request(host: host, port: port, method: "POST", path: path, body: body, timeout: 30,
                                                     namespace: clientNamespace)
                summary.latencies.append(Date().timeIntervalSince(started) * 1000)
                switch reply.status {
                case 200: summary.ok += 1; emit("\(n) 200 \(reply.text)")
                case 204: summary.dropped += 1; emit("\(n) 204 (dropped)")
                default: summary.failed += 1; emit("\(n) \(reply.status) \(reply.text)")
                }
            } catch {
                summary.failed += 1
                emit("\(n) error \(error)")
            }
        }
        return summary
    }

    /// Keeps every child running until SIGINT or SIGTERM: a child that dies is restarted on its port.
    package func supervise(everyTick: () -> Void = {}) {
        while !stopRequested.load(ordering: .relaxed) {
            usleep(100_000)
            everyTick()
            // A failed test bed node stays down (nothing restarts on it) until it is revived.
            for child in services + sidecars where !child.isRunning && !stopRequested.load(ordering: .relaxed) && !(child.node.map(Testbed.isDown) ?? false) {
                let status = child.process?.terminationStatus ?? -1
                child.restarts = child.restarts.filter { $0.timeIntervalSinceNow > -30 } + [Date()]
                if child.restarts.count > 5 {
                    log("\(child.name) keeps exiting (status \(status)); waiting 2 s before the next restart")
                    usleep(2_000_000)
                    if stopRequested.load(ordering: .relaxed) { break }
                }
                log("\(child.name) exited (status \(status)); restarting it on \(child.node.map { "node \($0), " } ?? "")port \(child.port)")
                do { try child.start() } catch { log("\(error)") }
            }
        }
    }

    /// Stops every child: SIGTERM (they drain), then SIGKILL after `timeout` seconds.
    package func stop(timeout: Double = 10) {
        let all = services + sidecars
        for child in all where child.isRunning { kill(child.process!.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(timeout)
        while all.contains(where: \.isRunning) && Date() < deadline { usleep(20_000) }
        for child in all where child.isRunning { kill(child.process!.processIdentifier, SIGKILL) }
        for child in all { child.process?.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: stateDirectory)
        restoreSysctls()
    }

    private func installSignalHandlers() {
        stopRequested.store(false, ordering: .relaxed)
        signal(SIGINT) { _ in stopRequested.store(true, ordering: .relaxed) }
        signal(SIGTERM) { _ in stopRequested.store(true, ordering: .relaxed) }
        // Whoever started us may have left these blocked; then the handlers would never run.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}
