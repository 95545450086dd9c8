import DyninkaCompiler
import DyninkaSettings
import DyninkaSystem
import DyninkaTestbed
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Set by the SIGINT / SIGTERM handler; read by the supervisor loop.
private let stopRequested = Atomic<Bool>(false)

/// Runs an app on this machine: one `dyninka-host serve` per service on 127.0.0.1, plus the
/// sidecars the app declares. The embedded default: no cluster, no containers.
package final class LocalRunner {
    /// The app as it runs now (`adopt` takes a rebuilt one after a hot swap).
    package internal(set) var ir: AppIR
    package let hostBinary: String
    private let settings: AppSettings
    private let appDirectory: String
    let log: (String) -> Void
    var services: [Child] = []
    private var sidecars: [Child] = []
    /// What every host of this run is started with besides its own settings (tracing).
    var baseSettings = HostSettings()

    /// The topology: point to point (the default), or gateway mode for comparison.
    package enum Topology: Sendable { case pointToPoint, gateway }
    package let topology: Topology
    /// Gateway mode: the gateway and the orchestrator (also in `services`).
    private var gatewayPort = 0

    /// `basePort` 0 picks free ports; otherwise services take basePort, basePort+1, ...
    /// `fusion`: which services share a process (point to point only).
    package init(ir: AppIR, library: String, hostBinary: String, basePort: Int, appDirectory: String, settings: AppSettings,
                topology: Topology = .pointToPoint, fusion: Fusion = .none, hostSettings: HostSettings = HostSettings(),
                log: @escaping (String) -> Void) {
        self.topology = topology
        self.fusion = fusion
        self.baseSettings = hostSettings
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
        let peers = zip(ir.services, ports).map { "\($0.name)=127.0.0.1:\($1)" }
        if topology == .pointToPoint {
            // One host per group (of one service, or fused); every service keeps its own port,
            // which a fused host listens on too (--also-listen), so that groups can change.
            let portOf = Dictionary(uniqueKeysWithValues: zip(ir.services.map(\.name), ports))
            for group in fusion.groups(ir.services, entry: ir.dataflow.entry) {
                var launch = serveLaunch(library: library, service: group.joined(separator: ","), port: portOf[group[0]]!)
                launch.settings.alsoListen = group.dropFirst().map { "\($0)=127.0.0.1:\(portOf[$0]!)" }
                launch.settings.peers = peers
                services.append(Child(name: group.joined(separator: ","), launch: launch, environment: sidecarEnvironment))
            }
            return
        }
        do {
            // Function instances, an orchestrator and the gateway in front of all of them.
            let count = ir.services.count
            let orchestratorPort = basePort == 0 ? BlockingHTTP.freePort() : basePort + count
            gatewayPort = basePort == 0 ? BlockingHTTP.freePort() : basePort + count + 1
            for (service, port) in zip(ir.services, ports) {
                services.append(Child(name: service.name, launch: hostLaunch("function", library: library, service: service.name, port: port),
                                      environment: sidecarEnvironment))
            }
            services.append(Child(name: "orchestrator", launch: hostLaunch("orchestrator", library: library, port: orchestratorPort,
                                                                               role: ["--gateway", "127.0.0.1:\(gatewayPort)"]),
                                  environment: sidecarEnvironment))
            services.append(Child(name: "gateway", launch: hostLaunch("gateway", port: gatewayPort,
                                                                          role: ["--functions", (peers + ["orchestrator=127.0.0.1:\(orchestratorPort)"]).joined(separator: ",")]),
                                  environment: [:]))
        }
    }

    /// Which services share a process on this run.
    package let fusion: Fusion

    /// How a service's host is started on this run: point to point, with its hand-over files,
    /// route file and the run's key.
    func serveLaunch(library: String, service: String, host: String = "127.0.0.1", port: Int) -> HostLaunch {
        var launch = hostLaunch(nil, library: library, service: service, host: host, port: port)
        // A file per service, which a host of any grouping writes or takes.
        launch.settings.stateOut = stateTemplate
        launch.settings.routeFile = routePath(service)
        launch.settings.appKeyFile = appKeyPath
        return launch
    }

    /// How a host of this run is started: `dyninka-host gateway-mode MODE` (`role` holds the
    /// mode's own flags), or `serve` for a nil mode; warnings only, and it exits with the run.
    func hostLaunch(_ mode: String?, library: String? = nil, service: String? = nil, host: String = "127.0.0.1", port: Int,
                       role: [String] = []) -> HostLaunch {
        var settings = baseSettings
        settings.app = library
        settings.service = service
        settings.host = host
        settings.port = port
        settings.logLevel = "warning"
        settings.exitWithParent = true
        return HostLaunch(binary: hostBinary, subcommand: mode.map { ["gateway-mode", $0] } ?? ["serve"], settings: settings, roleArguments: role)
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
                spread: [String]? = nil, topology: Topology = .pointToPoint, fusion: Fusion = .none,
                hostSettings: HostSettings = HostSettings(), log: @escaping (String) -> Void) throws {
        self.topology = topology
        self.fusion = fusion
        self.baseSettings = hostSettings
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
        // Addresses: 10.77.K.10, .11, ... on node K, in the order above. A fused host listens on
        // each of its services' addresses.
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
        if topology == .gateway {
            let functions = ir.services.map { "\($0.name)=\(app)-\(ObjectNames.dns($0.name)):\(port)" } + ["orchestrator=\(app)-orchestrator:\(port)"]
            for service in ir.services {
                services.append(Child(name: service.name, launch: hostLaunch("function", library: library, service: service.name,
                                                                                  host: addresses[service.name]!, port: port),
                                      environment: sidecarEnvironment, node: assignment[service.name]))
            }
            services.append(Child(name: "orchestrator", launch: hostLaunch("orchestrator", library: library, host: addresses["orchestrator"]!, port: port,
                                                                               role: ["--gateway", "\(app)-gateway:\(port)"]),
                                  environment: sidecarEnvironment, node: assignment["orchestrator"]))
            services.append(Child(name: "gateway", launch: hostLaunch("gateway", host: addresses["gateway"]!, port: port,
                                                                          role: ["--functions", functions.joined(separator: ",")]),
                                  environment: [:], node: assignment["gateway"]))
            gatewayPort = port
            return
        }
        // Fused groups: the services of one node share a host.
        for group in fusion.groups(ir.services, entry: ir.dataflow.entry, node: { assignment[$0] }) {
            let name = group.joined(separator: ",")
            var launch = serveLaunch(library: library, service: name, host: addresses[group[0]]!, port: port)
            launch.settings.alsoListen = group.dropFirst().map { "\($0)=\(addresses[$0]!):\(port)" }
            // The same peer template as the Kubernetes manifests: every peer by its name.
            launch.settings.peerTemplate = "\(app)-{name}:\(port)"
            services.append(Child(name: name, launch: launch, environment: sidecarEnvironment, node: assignment[group[0]]))
        }
    }

    /// Where the hosts hand over @Placed state in a hot swap: a folder of this run's own.
    let stateDirectory: String = {
        let folder = NSTemporaryDirectory() + "dyninka-state-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return folder
    }()

    func statePath(_ service: String) -> String { "\(stateDirectory)/\(service).state" }
    /// The hand-over path every host gets: one file per service it serves.
    var stateTemplate: String { statePath("{service}") }

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

    var migrationWarned = false
    /// Sysctls this run changed, by namespace ("": the machine's own), with their first value.
    var changedSysctls: [String: String] = [:]

    /// Longest a move waits for the handshakes under way to its address to complete (s); a
    /// handshake still open after it is one whose client stopped answering.
    static let handshakeWait = 1.0

    /// On a test bed: the bed, and every service's and sidecar's address.
    package private(set) var bed: Testbed.State?
    private var bedAddresses: [String: String] = [:]

    /// The node each service and sidecar runs on (test bed), by name.
    package var nodes: [String: String] {
        var nodes: [String: String] = [:]
        for child in services + sidecars { if let node = child.node { for name in child.served { nodes[name] = node } } }
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

    /// Where each service listens, in the order of the hosts (a fused host's other services at
    /// their own paths).
    package var endpoints: [(name: String, url: String)] {
        services.flatMap { child in child.addresses.map { ($0.name, "http://\($0.host):\($0.port)") } }
    }

    /// Where a client posts to run the default dataflow.
    package var entryURL: String {
        let child = entryChild
        let base = "http://\(child?.host ?? "127.0.0.1"):\(entry.port)"
        return entry.path == "/" ? base : base + entry.path
    }

    var entryChild: Child? {
        services.first { topology == .gateway ? $0.name == "gateway" : $0.served.first == ir.dataflow.entry }
    }

    /// The entry's port and path: the entry service, or the gateway's /function/orchestrator.
    package var entry: (port: Int, path: String) {
        if topology == .gateway { return (gatewayPort, "/function/orchestrator") }
        return (entryChild?.port ?? 0, "/")
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

    func waitHealthy(_ child: Child, path: String?) throws {
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
