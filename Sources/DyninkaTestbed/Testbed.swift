import DyninkaCompiler
import DyninkaSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why the test bed could not do what was asked.
package struct TestbedFailure: Error, CustomStringConvertible, Sendable {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// A fog test bed on one machine. Each node is a network namespace (`dynbed-NODE`) with one
/// address (10.77.K.2/24); a router namespace (`dynbed-core`) joins them with a veth pair per
/// node and carries the links' conditions: loss by iptables' statistic match, rate by tc htb,
/// delay by `dyninka-linkemu` holding NFQUEUE'd packets. Names resolve per node through
/// `/etc/netns/dynbed-NODE/hosts`, which `ip netns exec` puts in place of /etc/hosts. Nothing
/// touches the machine's own network: the bed's namespaces have no route out.
package enum Testbed {
    /// Every name the bed creates starts with this.
    package static let prefix = "dynbed"
    package static let coreNamespace = "dynbed-core"
    /// State of the bed that is up (JSON), the emulator's configuration and log.
    package static let stateDirectory = "/run/dyninka-testbed"
    static var statePath: String { stateDirectory + "/state.json" }
    static var emulatorConfig: String { stateDirectory + "/linkemu.conf" }
    static var emulatorLog: String { stateDirectory + "/linkemu.log" }

    /// One node of a bed that is up.
    package struct NodeState: Codable, Sendable, Equatable {
        package var name: String
        package var index: Int
        package var address: String
        package var labels: [String: String]
        package var namespace: String { Testbed.namespace(of: name) }
    }

    /// The conditions of one pair of nodes (both directions).
    package struct LinkState: Codable, Sendable, Equatable {
        package var a: String
        package var b: String
        package var conditions: LinkConditions
    }

    /// A bed that is up: what `status` shows and what runs read.
    package struct State: Codable, Sendable {
        package var name: String
        package var file: String
        package var nodes: [NodeState]
        package var links: [LinkState]
        package var gatewayNode: String
        /// Its Kubernetes cluster (`up --kubernetes`), nil for a bed of plain processes.
        package var cluster: Cluster?

        package func node(_ name: String) -> NodeState? { nodes.first { $0.name == name } }
        /// Nodes services may be placed on (all but the client).
        package var placementNodes: [PlacementNode] {
            nodes.filter { $0.name != TestbedSpec.clientNode }.map { PlacementNode(name: $0.name, labels: $0.labels) }
        }
        /// The conditions between two nodes (LAN when none were set).
        package func conditions(_ a: String, _ b: String) -> LinkConditions {
            links.first { Set([$0.a, $0.b]) == Set([a, b]) }?.conditions ?? LinkConditions()
        }
    }

    package static func namespace(of node: String) -> String { "\(prefix)-\(node)" }

    /// The bed that is up, if any.
    package static func current() -> State? {
        guard let data = FileManager.default.contents(atPath: statePath) else { return nil }
        return try? JSONDecoder().decode(State.self, from: data)
    }

    /// The bed needs root: namespaces, veths, iptables.
    package static func requireRoot() throws(TestbedFailure) {
        guard geteuid() == 0 else {
            throw TestbedFailure("the test bed needs root (it creates network namespaces, veth links and iptables rules); run it with sudo")
        }
        for tool in ["/usr/sbin/ip", "/usr/sbin/tc", "/usr/sbin/iptables-restore"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw TestbedFailure("\(tool) is missing: install iproute2 and iptables (scripts/bootstrap does)")
        }
    }

    // MARK: - Up and down

    /// Brings a bed up from its file: removes leftovers of an earlier bed first, creates the
    /// router and the nodes (plus `client`), their names, and the links' conditions.
    /// With `kubernetesKit` (the kit's folder), every node also becomes a real Kubernetes node
    /// (see `startCluster`).
    package static func up(_ spec: TestbedSpec, file: String, emulator: String, kubernetesKit: String? = nil,
                           log: (String) -> Void) throws(TestbedFailure) -> State {
        try requireRoot()
        guard FileManager.default.isExecutableFile(atPath: emulator) else {
            throw TestbedFailure("the link emulator \(emulator) is missing: build it with `swift build --product dyninka-linkemu`")
        }
        let removed = try down()
        if !removed.isEmpty { log("removed what an earlier bed left: \(removed.joined(separator: ", "))") }
        var nodes: [NodeState] = []
        for (offset, node) in spec.nodes.enumerated() {
            nodes.append(NodeState(name: node.name, index: offset + 1, address: "10.77.\(offset + 1).2", labels: node.labels))
        }
        nodes.append(NodeState(name: TestbedSpec.clientNode, index: 250, address: "10.77.250.2", labels: [:]))
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        } catch { throw TestbedFailure("cannot create \(stateDirectory): \(error.localizedDescription)") }
        // A bed that cannot come up whole leaves nothing behind: what was made is taken down.
        do throws(TestbedFailure) {
            var state = try build(spec, file: file, emulator: emulator, nodes: nodes)
            if let kubernetesKit { try startCluster(&state, kit: kubernetesKit, log: log) }
            return state
        } catch {
            let removed = (try? down()) ?? []
            log("the bed did not come up: removed what was made (\(removed.isEmpty ? "nothing" : removed.joined(separator: ", ")))")
            throw error
        }
    }

    /// The namespaces, links, names and emulator of a bed (`up` removes them again on a failure).
    private static func build(_ spec: TestbedSpec, file: String, emulator: String, nodes: [NodeState]) throws(TestbedFailure) -> State {
        try run(["ip", "netns", "add", coreNamespace])
        // No reverse-path filter in the router (whatever the machine's defaults): a packet that
        // reached a moving service's old node just after its address left is sent back through
        // the router to the new node, arriving from an interface its source is not behind.
        try run(["ip", "netns", "exec", coreNamespace, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                 "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])
        try run(["ip", "-n", coreNamespace, "link", "set", "lo", "up"])
        for node in nodes {
            let ns = node.namespace
            try run(["ip", "netns", "add", ns])
            // The pair is made inside the two namespaces: no interface ever appears in the machine's own.
            try run(["ip", "-n", coreNamespace, "link", "add", "dynb\(node.index)", "type", "veth", "peer", "name", "eth0", "netns", ns])
            try run(["ip", "-n", coreNamespace, "addr", "add", "10.77.\(node.index).1/24", "dev", "dynb\(node.index)"])
            try run(["ip", "-n", coreNamespace, "link", "set", "dynb\(node.index)", "up"])
            try run(["ip", "-n", ns, "addr", "add", "\(node.address)/24", "dev", "eth0"])
            try run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            try run(["ip", "-n", ns, "link", "set", "lo", "up"])
            try run(["ip", "-n", ns, "route", "add", "default", "via", "10.77.\(node.index).1"])
            // A moving service's address is on two nodes for a moment (`dyninka move`): the old
            // node must take the new one's answers, which come from an address it still has.
            // And once the address has left the old node, a packet for it still on its way there
            // (the link holds packets for its delay) is forwarded back through the router to the
            // new node rather than dropped, which would cost a connection attempt a 1 s SYN
            // retransmission; no redirects about it.
            try run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.all.accept_local=1", "net.ipv4.conf.eth0.accept_local=1",
                     "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.eth0.send_redirects=0"])
        }
        var state = State(name: spec.name, file: file, nodes: nodes, links: [], gatewayNode: spec.gatewayNode)
        for link in spec.links { state.links.append(LinkState(a: link.a, b: link.b, conditions: link.conditions)) }
        try writeHosts(state, services: [])
        // Every direction of every pair gets a queue now, so that a later delay needs no new one.
        try writeEmulatorConfig(state)
        try startEmulator(emulator)
        try save(state)
        try applyLinks(state)
        return state
    }

    /// Removes everything any bed created: processes in its namespaces, the namespaces (and with
    /// them their links and rules), the per-node /etc/netns files and the state. Returns what it
    /// removed.
    @discardableResult
    package static func down() throws(TestbedFailure) -> [String] {
        try requireRoot()
        // A cluster first: its kubelets stop their pods and the kit removes their mounts, bridges,
        // rules and cgroups, which killing the processes would leave behind.
        var removed = stopCluster()
        let namespaces = leftoverNamespaces()
        // Processes first (they may hold the namespaces open), the router last.
        for ns in namespaces.sorted(by: { $0 == coreNamespace ? false : $1 == coreNamespace ? true : $0 < $1 }) {
            let pids = processes(inNamespace: ns).map(\.pid)
            for pid in pids { Glibc.kill(pid, SIGTERM) }
            let deadline = Date().addingTimeInterval(3)
            while Date() < deadline, pids.contains(where: { Glibc.kill($0, 0) == 0 && !isZombie($0) }) { usleep(20_000) }
            for pid in pids where Glibc.kill(pid, 0) == 0 { Glibc.kill(pid, SIGKILL) }
            if !pids.isEmpty { removed.append("\(pids.count) process\(pids.count == 1 ? "" : "es") in \(ns)") }
        }
        for ns in namespaces {
            try run(["ip", "netns", "del", ns])
            removed.append("namespace \(ns)")
        }
        let fm = FileManager.default
        for entry in (try? fm.contentsOfDirectory(atPath: "/etc/netns")) ?? [] where entry.hasPrefix(prefix + "-") {
            try? fm.removeItem(atPath: "/etc/netns/\(entry)")
        }
        if fm.fileExists(atPath: stateDirectory) {
            try? fm.removeItem(atPath: stateDirectory)
        }
        return removed
    }

    /// Namespaces, /etc/netns folders and processes a bed left (empty after `down`).
    package static func leftovers() -> [String] {
        var found = leftoverNamespaces().map { "namespace \($0)" }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/etc/netns")) ?? [] where entry.hasPrefix(prefix + "-") {
            found.append("/etc/netns/\(entry)")
        }
        if FileManager.default.fileExists(atPath: stateDirectory) { found.append(stateDirectory) }
        if (try? run(["ip", "link", "show", managementLink])) != nil { found.append("link \(managementLink)") }
        return found
    }

    static func leftoverNamespaces() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/var/run/netns")) ?? []).filter { $0.hasPrefix(prefix + "-") }.sorted()
    }

    static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(close, offsetBy: 2)...].hasPrefix("Z")
    }

    /// The processes running in a namespace, with their command lines.
    package static func processes(inNamespace ns: String) -> [(pid: Int32, command: String)] {
        guard let output = try? run(["ip", "netns", "pids", ns]) else { return [] }
        return output.split(separator: "\n").compactMap { Int32($0.trimmingCharacters(in: .whitespaces)) }.map { pid in
            let raw = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data()
            let command = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
            return (pid, command)
        }
    }

    // MARK: - Node failures

    static func downMarker(_ node: String) -> String { stateDirectory + "/down-\(node)" }

    /// A node that failed: `dyninka run` does not restart what ran on it until it is revived.
    package static func isDown(_ node: String) -> Bool { FileManager.default.fileExists(atPath: downMarker(node)) }

    /// Fails a node: marks it down (so that nothing is restarted there) and kills every process
    /// in it at once (SIGKILL, as a power loss would): on a Kubernetes bed, its containerd,
    /// kubelet, kube-proxy and every container of its pods. Returns how many processes were killed.
    @discardableResult
    package static func kill(node: String) throws(TestbedFailure) -> Int {
        try requireRoot()
        guard let state = current(), let found = state.node(node) else { throw TestbedFailure("no node '\(node)' in a running test bed") }
        guard FileManager.default.createFile(atPath: downMarker(node), contents: nil) else { throw TestbedFailure("cannot write \(downMarker(node))") }
        var pids = Set(processes(inNamespace: found.namespace).map(\.pid))
        if state.cluster != nil { pids.formUnion(containerProcesses(ofNode: node)) }
        for pid in pids { Glibc.kill(pid, SIGKILL) }
        return pids.count
    }

    /// Brings a failed node back: what ran there is restarted by `dyninka run`; on a Kubernetes
    /// bed its daemons start again and it rejoins the cluster (Ready when this returns).
    package static func revive(node: String) throws(TestbedFailure) {
        try requireRoot()
        guard let state = current(), let found = state.node(node) else { throw TestbedFailure("no node '\(node)' in a running test bed") }
        if let cluster = state.cluster { try reviveNode(found, cluster: cluster) }
        try? FileManager.default.removeItem(atPath: downMarker(node))
    }

    // MARK: - Links

    /// Changes the conditions between two nodes while the bed runs (the faults use it:
    /// loss 100 cuts the link, a long delay degrades it).
    package static func setLink(_ a: String, _ b: String, _ conditions: LinkConditions) throws(TestbedFailure) -> State {
        try requireRoot()
        guard var state = current() else { throw TestbedFailure("no test bed is up (start one with `dyninka testbed up FILE`)") }
        for name in [a, b] where state.node(name) == nil {
            throw TestbedFailure("no node '\(name)' in the bed; it has \(state.nodes.map(\.name).joined(separator: ", "))")
        }
        guard a != b else { throw TestbedFailure("a link joins two different nodes") }
        state.links.removeAll { Set([$0.a, $0.b]) == Set([a, b]) }
        if conditions != LinkConditions() { state.links.append(LinkState(a: a, b: b, conditions: conditions)) }
        try writeEmulatorConfig(state)
        guard let emulator = emulatorPID(), Glibc.kill(emulator, SIGHUP) == 0 else {
            throw TestbedFailure("the link emulator is not running in \(coreNamespace); bring the bed down and up again (its log: \(emulatorLog))")
        }
        try save(state)
        try applyLinks(state)
        return state
    }

    /// The queue of the direction `from` -> `to`.
    static func queue(_ from: NodeState, _ to: NodeState) -> Int { from.index * 256 + to.index }

    static func writeEmulatorConfig(_ state: State) throws(TestbedFailure) {
        var lines = ["# QUEUE DELAY_MS JITTER_MS, one per direction of every pair of nodes (written by dyninka testbed)"]
        for from in state.nodes {
            for to in state.nodes where to.name != from.name {
                let conditions = state.conditions(from.name, to.name)
                lines.append("\(queue(from, to)) \(conditions.delayMs) \(conditions.jitterMs)")
            }
        }
        do { try (lines.joined(separator: "\n") + "\n").write(toFile: emulatorConfig, atomically: true, encoding: .utf8) } catch {
            throw TestbedFailure("cannot write \(emulatorConfig): \(error.localizedDescription)")
        }
    }

    /// The link emulator's process (it runs in the router's namespace).
    package static func emulatorPID() -> Int32? {
        processes(inNamespace: coreNamespace).first { $0.command.contains("dyninka-linkemu") }?.pid
    }

    static func startEmulator(_ emulator: String) throws(TestbedFailure) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        process.arguments = ["ip", "netns", "exec", coreNamespace, emulator, emulatorConfig]
        guard FileManager.default.createFile(atPath: emulatorLog, contents: nil),
              let log = FileHandle(forWritingAtPath: emulatorLog) else { throw TestbedFailure("cannot write \(emulatorLog)") }
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { throw TestbedFailure("cannot start \(emulator): \(error.localizedDescription)") }
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            let text = (try? String(contentsOfFile: emulatorLog, encoding: .utf8)) ?? ""
            if text.contains("holding") { return }
            if !process.isRunning { throw TestbedFailure("the link emulator exited at start: \(text.trimmingCharacters(in: .whitespacesAndNewlines))") }
            usleep(20_000)
        }
        throw TestbedFailure("the link emulator did not start within 5 s (its log: \(emulatorLog))")
    }

    /// Loss and delay by iptables in the router (one atomic ruleset), rate by tc htb on the
    /// router's interface towards each receiving node.
    static func applyLinks(_ state: State) throws(TestbedFailure) {
        // Packets are told apart by the router's interfaces, not by address: a service's address
        // may move to another node (`dyninka move`) and then carries that node's links.
        var rules = ["*mangle", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
                     ":POSTROUTING ACCEPT [0:0]"]
        for node in state.nodes { rules.append("-A FORWARD -i dynb\(node.index) -j MARK --set-mark \(node.index + 10)") }
        rules += ["COMMIT", "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
        for link in state.links {
            guard let a = state.node(link.a), let b = state.node(link.b) else { continue }
            for (from, to) in [(a, b), (b, a)] {
                let match = "-A FORWARD -i dynb\(from.index) -o dynb\(to.index)"
                let loss = link.conditions.lossPercent
                if loss >= 100 {
                    rules.append("\(match) -j DROP")
                    continue
                }
                if loss > 0 { rules.append("\(match) -m statistic --mode random --probability \(loss / 100) -j DROP") }
                if link.conditions.delayMs > 0 || link.conditions.jitterMs > 0 {
                    rules.append("\(match) -j NFQUEUE --queue-num \(queue(from, to))")
                }
            }
        }
        rules.append("COMMIT")
        try run(["ip", "netns", "exec", coreNamespace, "iptables-restore"], input: rules.joined(separator: "\n") + "\n")
        for to in state.nodes {
            let device = "dynb\(to.index)"
            _ = try? run(["tc", "-n", coreNamespace, "qdisc", "del", "dev", device, "root"])
            let limited = state.links.compactMap { link -> (NodeState, Double)? in
                guard let rate = link.conditions.rateMbit, link.conditions.lossPercent < 100 else { return nil }
                if link.a == to.name, let from = state.node(link.b) { return (from, rate) }
                if link.b == to.name, let from = state.node(link.a) { return (from, rate) }
                return nil
            }
            guard !limited.isEmpty else { continue }
            try run(["tc", "-n", coreNamespace, "qdisc", "add", "dev", device, "root", "handle", "1:", "htb", "default", "1"])
            try run(["tc", "-n", coreNamespace, "class", "add", "dev", device, "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit"])
            for (from, rate) in limited {
                let kbit = String(Int(rate * 1000))
                try run(["tc", "-n", coreNamespace, "class", "add", "dev", device, "parent", "1:", "classid", "1:\(from.index + 10)",
                         "htb", "rate", "\(kbit)kbit", "ceil", "\(kbit)kbit"])
                // The mark says which node's interface the packet came in by (set in mangle FORWARD).
                try run(["tc", "-n", coreNamespace, "filter", "add", "dev", device, "parent", "1:", "protocol", "ip", "prio", "1",
                         "u32", "match", "mark", String(from.index + 10), "0xffffffff", "flowid", "1:\(from.index + 10)"])
            }
        }
    }

    // MARK: - Names

    /// Writes every node's hosts file: the nodes by name (`edge-1`, `edge-1.BED`) and the given
    /// services, each under all of its names. Written in place, so that processes already in a
    /// node see the change.
    package static func writeHosts(_ state: State, services: [(address: String, names: [String])]) throws(TestbedFailure) {
        var lines = ["127.0.0.1 localhost", "# nodes of the test bed '\(state.name)'"]
        for node in state.nodes { lines.append("\(node.address) \(node.name) \(node.name).\(state.name)") }
        if !services.isEmpty { lines.append("# services placed on the bed") }
        for service in services { lines.append("\(service.address) \(service.names.joined(separator: " "))") }
        let text = lines.joined(separator: "\n") + "\n"
        for node in state.nodes {
            let folder = "/etc/netns/\(node.namespace)"
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                // An unknown name fails at once instead of waiting for a DNS server the node cannot
                // reach; with a cluster, its kube-dns answers for Service names (`NAME.NS`, or whole).
                let resolver = state.cluster == nil ? "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
                    : "nameserver \(managementAddress)\nsearch svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:2\n"
                try resolver.write(toFile: folder + "/resolv.conf", atomically: false, encoding: .utf8)
                guard let handle = FileHandle(forWritingAtPath: folder + "/hosts") ?? {
                    FileManager.default.createFile(atPath: folder + "/hosts", contents: nil) ? FileHandle(forWritingAtPath: folder + "/hosts") : nil
                }() else { throw TestbedFailure("cannot write \(folder)/hosts") }
                try handle.truncate(atOffset: 0)
                try handle.write(contentsOf: Data(text.utf8))
                try handle.close()
            } catch let failure as TestbedFailure {
                throw failure
            } catch {
                throw TestbedFailure("cannot write \(folder)/hosts: \(error.localizedDescription)")
            }
        }
    }

    static func save(_ state: State) throws(TestbedFailure) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do { try encoder.encode(state).write(to: URL(fileURLWithPath: statePath)) } catch {
            throw TestbedFailure("cannot write \(statePath): \(error.localizedDescription)")
        }
    }

    // MARK: - Commands

    /// Runs a short command whose output is not needed (through `Command.quick`); throws with its
    /// message when it fails.
    static func quick(_ arguments: [String]) throws(TestbedFailure) {
        let output: CommandOutput
        do { output = try Command.quick(arguments) } catch {
            switch error {
            case .setup(let message), .launch(let message): throw TestbedFailure("cannot run \(arguments.joined(separator: " ")): \(message)")
            }
        }
        guard output.status == 0 else {
            throw TestbedFailure("`\(arguments.joined(separator: " "))` failed (status \(output.status)): \(output.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// Runs a command (no shell) and returns its standard output; a failure names the command
    /// and shows its standard error.
    @discardableResult
    package static func run(_ arguments: [String], input: String? = nil, environment: [String: String] = [:]) throws(TestbedFailure) -> String {
        let output: CommandOutput
        do { output = try Command.run("/usr/bin/env", arguments, input: input, environment: environment) } catch {
            switch error {
            case .setup(let message), .launch(let message): throw TestbedFailure("cannot run \(arguments.joined(separator: " ")): \(message)")
            }
        }
        guard output.status == 0 else {
            throw TestbedFailure("`\(arguments.joined(separator: " "))` failed (status \(output.status)): \(output.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return output.stdout
    }
}
