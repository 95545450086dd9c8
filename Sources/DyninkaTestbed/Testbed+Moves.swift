import DyninkaCompiler
import DyninkaSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// A running app on the bed: what `dyninka move` asks of the supervising run, and how a
// service's address moves between nodes (with the journal that rolls back a move cut short).
extension Testbed {
    // MARK: - Requests to the running app (signals and files, never a port)

    /// Where `dyninka move` leaves requests for the `dyninka run --testbed` that supervises the
    /// app, and finds the answers.
    package static var requestsDirectory: String { stateDirectory + "/requests" }

    /// A move under way, written down before it changes the network: if the process moving the
    /// service dies in the middle, `rollBackMoves` (at the next `dyninka run --testbed`, or the
    /// move's own failure) lifts the refusal rule and takes the address back home to the old node.
    package struct MoveJournal: Codable, Sendable {
        package var service: String
        package var address: String
        package var port: Int
        package var from: String
        package var to: String

        package init(service: String, address: String, port: Int, from: String, to: String) {
            self.service = service
            self.address = address
            self.port = port
            self.from = from
            self.to = to
        }

        var path: String { stateDirectory + "/move-\(service).json" }

        package func write() throws(TestbedFailure) {
            do { try JSONEncoder().encode(self).write(to: URL(fileURLWithPath: path)) } catch {
                throw TestbedFailure("cannot write \(path): \(error.localizedDescription)")
            }
        }

        package func remove() { try? FileManager.default.removeItem(atPath: path) }

        /// The network as before the move: no refusal rule on the old node, the address only there.
        package func rollBack(state: State, log: (String) -> Void) {
            guard let source = state.node(from), let target = state.node(to) else { return }
            // Every copy of the rule (a crash may have come between two inserts).
            while (try? refuseConnections(to: address, port: port, on: from, state: state, on: false)) != nil {}
            let home = address.hasPrefix("10.77.\(source.index).")
            _ = try? quick(["ip", "-n", target.namespace, "addr", "del", "\(address)/\(address.hasPrefix("10.77.\(target.index).") ? "24" : "32")", "dev", "eth0"])
            _ = try? quick(["ip", "-n", source.namespace, "addr", "replace", "\(address)/\(home ? "24" : "32")", "dev", "eth0"])
            if home {
                _ = try? quick(["ip", "-n", source.namespace, "route", "del", "\(address)/32"])
                _ = try? quick(["ip", "-n", coreNamespace, "route", "del", "\(address)/32"])
            } else {
                _ = try? quick(["ip", "-n", coreNamespace, "route", "replace", "\(address)/32", "dev", "dynb\(source.index)"])
            }
            log("rolled back the move of \(service) from \(from) to \(to): \(address) is on \(from) again, with no refusal rule")
        }
    }

    /// Rolls back every move a dead process left half done (see `MoveJournal`); returns how many.
    @discardableResult
    package static func rollBackMoves(state: State, log: (String) -> Void) -> Int {
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: stateDirectory)) ?? []).filter { $0.hasPrefix("move-") && $0.hasSuffix(".json") }
        for file in files {
            let path = stateDirectory + "/" + file
            guard let data = FileManager.default.contents(atPath: path), let journal = try? JSONDecoder().decode(MoveJournal.self, from: data) else {
                try? FileManager.default.removeItem(atPath: path)
                continue
            }
            journal.rollBack(state: state, log: log)
            journal.remove()
        }
        return files.count
    }

    /// A move asked of the supervising `dyninka run`.
    package struct MoveRequest: Codable, Sendable {
        package var service: String
        package var node: String
        package init(service: String, node: String) {
            self.service = service
            self.node = node
        }
    }

    /// Leaves a move request and waits for its answer: (succeeded, what the supervisor said).
    package static func requestMove(_ request: MoveRequest, timeout: Double) throws(TestbedFailure) -> (Bool, String) {
        guard current() != nil else { throw TestbedFailure("no test bed is up") }
        let id = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let folder = requestsDirectory
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let data = try JSONEncoder().encode(request)
            try data.write(to: URL(fileURLWithPath: "\(folder)/move-\(id).tmp"))
            _ = rename("\(folder)/move-\(id).tmp", "\(folder)/move-\(id).json")
        } catch { throw TestbedFailure("cannot leave the request in \(folder): \(error.localizedDescription)") }
        let answer = "\(folder)/move-\(id).done"
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: answer, encoding: .utf8) {
                try? FileManager.default.removeItem(atPath: answer)
                return (text.hasPrefix("ok"), String(text.drop { $0 != "\n" }.dropFirst()))
            }
            usleep(20_000)
        }
        try? FileManager.default.removeItem(atPath: "\(folder)/move-\(id).json")
        throw TestbedFailure("no answer within \(Int(timeout)) s: is `dyninka run --testbed` running the app?")
    }

    /// The supervisor's side: takes every waiting request, runs it, writes its answer.
    package static func serveMoveRequests(_ handle: (MoveRequest) -> (Bool, String)) {
        let folder = requestsDirectory
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for entry in entries.sorted() where entry.hasPrefix("move-") && entry.hasSuffix(".json") {
            let path = "\(folder)/\(entry)"
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            try? FileManager.default.removeItem(atPath: path)
            let (ok, text): (Bool, String)
            if let request = try? JSONDecoder().decode(MoveRequest.self, from: data) { (ok, text) = handle(request) } else { (ok, text) = (false, "unreadable request") }
            let answer = path.replacingOccurrences(of: ".json", with: ".done")
            try? ((ok ? "ok\n" : "error\n") + text).write(toFile: answer + ".tmp", atomically: false, encoding: .utf8)
            _ = rename(answer + ".tmp", answer)
        }
    }

    // MARK: - Moving an address

    /// Step 1 of moving a service's address (as a floating IP) from one node to another, once
    /// the old instance has gone: the new node gets the address too, and its own callers reach
    /// the new instance there (which listened on it already, IP_FREEBIND). The router still
    /// sends the address to the old node until `switchAddress`.
    package static func addAddress(_ address: String, to node: String, state: State) throws(TestbedFailure) {
        guard let target = state.node(node) else { throw TestbedFailure("no node '\(node)'") }
        let home = address.hasPrefix("10.77.\(target.index).")
        try quick(["ip", "-n", target.namespace, "addr", "replace", home ? "\(address)/24" : "\(address)/32", "dev", "eth0"])
        // Back home: the route that sent its own address through the router goes, after the
        // address is local again (the local table wins), so there is no moment without either.
        if home { _ = try? quick(["ip", "-n", target.namespace, "route", "del", "\(address)/32"]) }
    }

    /// During a move's hand-over: `node` answers new connections to `address:port` with a reset
    /// (the caller sees a refused connection and tries again within its --connect-retry) instead
    /// of taking them into a listener about to close. Handshakes under way still complete.
    /// `on: false` lifts it.
    package static func refuseConnections(to address: String, port: Int, on node: String, state: State, on: Bool) throws(TestbedFailure) {
        guard let source = state.node(node) else { throw TestbedFailure("no node '\(node)'") }
        let rule = ["INPUT", "-d", "\(address)/32", "-p", "tcp", "--dport", String(port), "--syn", "-j", "REJECT", "--reject-with", "tcp-reset"]
        try quick(["ip", "netns", "exec", source.namespace, "iptables", "-w", on ? "-I" : "-D"] + rule)
    }

    /// Step 2, right after step 1: the router sends the address to the new node,
    /// then the old node lets it go (its own callers then reach it through the router too).
    /// Callers keep the name and the address.
    package static func switchAddress(_ address: String, from: String, to: String, state: State) throws(TestbedFailure) {
        guard let source = state.node(from), let target = state.node(to) else { throw TestbedFailure("no node '\(state.node(from) == nil ? from : to)'") }
        if address.hasPrefix("10.77.\(target.index).") {
            _ = try? quick(["ip", "-n", coreNamespace, "route", "del", "\(address)/32"])
        } else {
            try quick(["ip", "-n", coreNamespace, "route", "replace", "\(address)/32", "dev", "dynb\(target.index)"])
        }
        let leavingHome = address.hasPrefix("10.77.\(source.index).")
        // The old node would otherwise look for the address on its own link (its /24) and find
        // no one: it goes through the router like any other. The route is in place before the
        // address goes (while the address is local, the local table wins), so no connection
        // attempt ever meets an address that is nowhere.
        if leavingHome {
            try quick(["ip", "-n", source.namespace, "route", "replace", "\(address)/32", "via", "10.77.\(source.index).1", "dev", "eth0"])
        }
        // A packet the router sent to the old node just before the switch may still be on the
        // link: the old node forwards it back through the router (nodes forward, see `up`).
        _ = try? quick(["ip", "-n", source.namespace, "addr", "del", "\(address)/\(leavingHome ? "24" : "32")", "dev", "eth0"])
    }
}
