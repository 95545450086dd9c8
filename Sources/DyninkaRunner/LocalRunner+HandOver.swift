import DyninkaCompiler
import DyninkaSettings
import DyninkaSystem
import DyninkaTestbed
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Replacing a running host: a hot swap on its node, a move to another node of the bed, a service
// added or removed while running; and what each reports (the new host's own word on the state).
extension LocalRunner {
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
        // A fused service is swapped with its whole host (the others' state goes along).
        guard topology == .pointToPoint, let index = services.firstIndex(where: { $0.served.contains(name) }) else {
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
    func replace(at index: Int, library: String?, node: String?, listeningOn place: String, freeBind: Bool = false,
                         beforeHandOver: (() throws -> Void)? = nil) throws -> (Double, Double, StateOutcome) {
        let old = services[index]
        let name = old.name
        guard var launch = old.launch, launch.subcommand == ["serve"] else {
            throw RunFailure(description: "'\(name)' is not a service host of a point-to-point run: it cannot be handed over")
        }
        if let library { launch.settings.app = library }
        if freeBind { launch.settings.freeBind = true }
        // A service added since the host started is among its peers now (local runs list them all).
        if bed == nil { launch.settings.peers = peerList() }
        launch.settings.stateIn = stateTemplate
        clearStateFiles(old.served)
        let replacement = Child(name: name, launch: launch, environment: old.environment, node: node)
        let started = Date()
        try replacement.start()
        try waitListening(replacement, what: "the new \(name)", place: place)
        let listening = Date()
        if let beforeHandOver {
            do { try beforeHandOver() } catch {
                kill(replacement.process!.processIdentifier, SIGKILL)
                throw error
            }
        }
        services[index] = replacement
        if let pid = old.process?.processIdentifier { kill(pid, SIGUSR1) }
        let state = readOutcomes(old.served) { replacement.isRunning }
        let handoverMs = Date().timeIntervalSince(listening) * 1000
        waitExited([old])
        return (listening.timeIntervalSince(started) * 1000, handoverMs, state)
    }

    /// Removes what an earlier hand-over of these services left.
    func clearStateFiles(_ names: [String]) {
        for name in names {
            for suffix in ["", ".handover", ".result"] { try? FileManager.default.removeItem(atPath: statePath(name) + suffix) }
        }
    }

    /// Waits (15 s at most) until `child` listens on every address of its services, seen through
    /// its network namespace; stops it and throws otherwise.
    func waitListening(_ child: Child, what: String, place: String) throws {
        let deadline = Date().addingTimeInterval(15)
        while !child.addresses.allSatisfy({ ProcNet.listens(pid: child.process!.processIdentifier, port: $0.port) }) {
            guard child.isRunning, Date() < deadline else {
                if child.isRunning { kill(child.process!.processIdentifier, SIGKILL) }
                throw RunFailure(description: "\(what) did not start listening on \(place) within 15 s; the old host keeps serving")
            }
            usleep(2_000)
        }
    }

    /// What the new hosts made of the state of `names`: each service's own report, together. The
    /// new hosts report within --state-wait, or within the bound the old ones announced
    /// (--handover-timeout, plus --response-timeout for an async service) and a second.
    func readOutcomes(_ names: [String], running: () -> Bool) -> StateOutcome {
        var lines: [String] = []
        var restored = true
        var hasState = false
        for name in names {
            let stateful = !(ir.services.first { $0.name == name }?.placedState.isEmpty ?? true)
            let outcome = StateOutcome.read(statePath(name) + ".result", hasState: stateful, timeout: 60, running: running)
            guard stateful else { continue }
            hasState = true
            restored = restored && outcome.restored
            lines.append(names.count == 1 ? outcome.line : "\(name): \(outcome.line)")
        }
        return StateOutcome(hasState: hasState, restored: restored, line: lines.joined(separator: "; "))
    }

    /// Then the old hosts relay what they still have (their --drain-timeout bounds that); the
    /// state is with the new hosts already, so ending them later costs no update.
    func waitExited(_ old: [Child]) {
        let exitDeadline = Date().addingTimeInterval(40)
        while old.contains(where: \.isRunning) && Date() < exitDeadline { usleep(1_000) }
        for child in old where child.isRunning {
            log("the old \(child.name) still relayed answers 40 s after the hand-over: stopped (SIGKILL)")
            if let pid = child.process?.processIdentifier { kill(pid, SIGKILL) }
        }
    }

    /// What a change of fusion did: the hosts before and after, and how long its parts took.
    package struct RegroupReport: Sendable, CustomStringConvertible {
        package var before: [String]
        package var after: [String]
        package var startMs: Double
        package var handoverMs: Double
        package var state: StateOutcome

        package var description: String {
            String(format: "%@ -> %@: new host(s) listening in %.0f ms, hand-over %.0f ms; %@",
                   before.map { "[\($0)]" }.joined(separator: " "), after.map { "[\($0)]" }.joined(separator: " "), startMs, handoverMs,
                   state.description)
        }
    }

    /// The services of each host now, in the order of the hosts.
    package var groups: [[String]] { services.filter(\.isService).map(\.served) }

    /// Changes which services share a host while the app serves, without refusing or losing a
    /// request, as a hot swap does: `groups` (each a list of services, the first answering at the
    /// host's `/`) replace the hosts that serve those services now. The new hosts listen on every
    /// service's own address next to the old ones (SO_REUSEPORT) and hold their requests; the old
    /// hosts hand over (SIGUSR1), a state file per service; each new host restores its services'
    /// state and serves. Fusing an edge is `[[a, b]]` where a and b ran apart; splitting it is
    /// `[[a], [b]]`. Every group's services must run on one node.
    package func regroup(_ groups: [[String]]) throws -> RegroupReport {
        guard topology == .pointToPoint else { throw RunFailure(description: "fusion changes only point-to-point hosts") }
        let names = groups.flatMap { $0 }
        guard Set(names).count == names.count, !names.isEmpty else {
            throw RunFailure(description: "each service may be in one group only: \(groups)")
        }
        let oldIndices = services.indices.filter { services[$0].isService && services[$0].served.contains(where: names.contains) }
        let old = oldIndices.map { services[$0] }
        let covered = Set(old.flatMap(\.served))
        guard covered == Set(names) else {
            throw RunFailure(description: "the new groups must hold exactly the services of the hosts they replace: \(covered.sorted().joined(separator: ", "))")
        }
        // Where every service listens now, and the node it runs on.
        var address: [String: (host: String, port: Int)] = [:]
        var node: [String: String?] = [:]
        for child in old {
            for entry in child.addresses { address[entry.name] = (entry.host, entry.port) }
            for name in child.served { node[name] = child.node }
        }
        for group in groups where Set(group.map { node[$0] ?? nil }).count > 1 {
            throw RunFailure(description: "\(group.joined(separator: ", ")) run on different nodes; only services of one node can share a host (move one first)")
        }
        for index in oldIndices { enableRequestMigration(namespace: services[index].namespace) }
        clearStateFiles(names)
        var fresh: [Child] = []
        for group in groups {
            let first = old.first { $0.served.contains(group[0]) }!
            guard var launch = first.launch, launch.subcommand == ["serve"] else {
                throw RunFailure(description: "'\(first.name)' is not a service host: it cannot be regrouped")
            }
            launch.settings.service = group.joined(separator: ",")
            launch.settings.host = address[group[0]]!.host
            launch.settings.port = address[group[0]]!.port
            launch.settings.alsoListen = group.dropFirst().map { "\($0)=\(address[$0]!.host):\(address[$0]!.port)" }
            launch.settings.stateIn = stateTemplate
            if bed == nil { launch.settings.peers = peerList() }
            fresh.append(Child(name: group.joined(separator: ","), launch: launch, environment: first.environment, node: first.node))
        }
        let started = Date()
        for child in fresh {
            do {
                try child.start()
                try waitListening(child, what: "the new host of \(child.name)", place: child.addresses.map { "\($0.host):\($0.port)" }.joined(separator: ", "))
            } catch {
                for started in fresh where started.isRunning { kill(started.process!.processIdentifier, SIGKILL) }
                throw error
            }
        }
        let listening = Date()
        // The new hosts take the old ones' places in the list, in order.
        for index in oldIndices.reversed() { services.remove(at: index) }
        services.insert(contentsOf: fresh, at: min(oldIndices.first ?? services.count, services.count))
        for child in old { if let pid = child.process?.processIdentifier { kill(pid, SIGUSR1) } }
        let state = readOutcomes(names) { fresh.allSatisfy(\.isRunning) }
        let handoverMs = Date().timeIntervalSince(listening) * 1000
        waitExited(old)
        return RegroupReport(before: old.map(\.name), after: fresh.map(\.name), startMs: listening.timeIntervalSince(started) * 1000,
                             handoverMs: handoverMs, state: state)
    }

    /// Takes the rebuilt app as the one running (after `--watch` swapped, added or removed what
    /// changed): its entry is where clients post.
    package func adopt(_ ir: AppIR) { self.ir = ir }

    /// Every service's address, as `--peers` gives them on a local run.
    func peerList() -> [String] {
        services.filter(\.isService).flatMap { child in child.addresses.map { "\($0.name)=\($0.host):\($0.port)" } }
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
        var launch = serveLaunch(library: library, service: name, port: port)
        launch.settings.peers = peerList() + ["\(name)=127.0.0.1:\(port)"]
        let child = Child(name: name, launch: launch, environment: environment)
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
        guard topology == .pointToPoint, let index = services.firstIndex(where: { $0.served.contains(name) }) else {
            throw RunFailure(description: "no point-to-point service '\(name)'; the services are \(services.map(\.name).joined(separator: ", "))")
        }
        guard services[index].served.count == 1 else {
            throw RunFailure(description: "\(name) runs fused with \(services[index].served.filter { $0 != name }.joined(separator: ", ")); split it off before moving it")
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
        let (startMs, handoverMs, state) = try replace(at: index, library: nil, node: node, listeningOn: node, freeBind: true) {
            let settling = Date()
            try Testbed.refuseConnections(to: old.host, port: old.port, on: from, state: bed, on: true)
            refusing = true
            guard let pid = old.process?.processIdentifier else { return }
            let deadline = Date().addingTimeInterval(Self.handshakeWait)
            while ProcNet.handshakes(pid: pid, address: old.host, port: old.port) > 0 && Date() < deadline { usleep(500) }
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
    func enableRequestMigration(namespace: String?) {
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
    func warnMigration() {
        guard !migrationWarned else { return }
        migrationWarned = true
        log("cannot set net.ipv4.tcp_migrate_req=1 (not root?): a swap may refuse the few connections waiting in the old host's accept queue")
    }

    /// Puts back what `enableRequestMigration` changed (a namespace that is gone has nothing to restore).
    func restoreSysctls() {
        for (namespace, original) in changedSysctls {
            let prefix = namespace.isEmpty ? [] : ["ip", "netns", "exec", namespace]
            _ = try? Command.run("/usr/bin/env", prefix + ["sysctl", "-q", "-w", "net.ipv4.tcp_migrate_req=\(original)"])
        }
        changedSysctls.removeAll()
    }
}
