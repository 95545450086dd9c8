/// A machine services can run on: a test bed node, or a Kubernetes node (its name is its
/// `kubernetes.io/hostname`).
package struct PlacementNode: Sendable, Equatable {
    package var name: String
    package var labels: [String: String]

    package init(name: String, labels: [String: String]) {
        self.name = name
        self.labels = labels
    }

    /// "edge-1 (zone=roof)".
    package var shown: String {
        labels.isEmpty ? name : "\(name) (\(labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")))"
    }
}

/// Why services cannot be placed on the nodes there are.
package struct PlacementFailure: Error, CustomStringConvertible, Sendable {
    package var description: String
}

/// What `@Service(node:label:near:)` means, in one place: the Kubernetes manifests express it as
/// nodeSelector and pod affinity for the scheduler, `dyninka deploy` checks the cluster's nodes
/// against it before applying, and the test bed assigns services to nodes with it.
package enum Placement {
    /// The nodes a placement allows by itself: `node:` is the node's name, `label: "k=v"` a
    /// label the node carries; both must hold. (`near:` depends on where the other service is.)
    package static func candidates(_ placement: PlacementIR?, among nodes: [PlacementNode]) -> [PlacementNode] {
        nodes.filter { node in
            if let wanted = placement?.node, node.name != wanted { return false }
            if let label = placement?.label {
                let parts = label.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, node.labels[parts[0]] == parts[1] else { return false }
            }
            return true
        }
    }

    /// What a placement asks for, for messages: `node edge-1 and label zone=roof`.
    package static func describe(_ placement: PlacementIR?) -> String {
        var parts: [String] = []
        if let node = placement?.node { parts.append("node \(node)") }
        if let label = placement?.label { parts.append("label \(label)") }
        if let near = placement?.near { parts.append("near \(near)") }
        return parts.isEmpty ? "any node" : parts.joined(separator: " and ")
    }

    /// Checks that every service has somewhere to go (Kubernetes, before applying): a service
    /// whose node or label no node has would stay Pending.
    package static func check(_ services: [(name: String, placement: PlacementIR?)], nodes: [PlacementNode]) throws(PlacementFailure) {
        var problems: [String] = []
        for service in services where candidates(service.placement, among: nodes).isEmpty {
            problems.append("'\(service.name)' asks for \(describe(service.placement)), and no node fits")
        }
        guard problems.isEmpty else {
            throw PlacementFailure(description: problems.joined(separator: "; ") + ". The nodes are: \(nodes.map(\.shown).joined(separator: ", "))")
        }
    }

    /// Assigns every service (and sidecar) to one node, deterministically: `node:` and `label:`
    /// narrow the choice, `near:` takes the other service's node, and among the allowed nodes
    /// the one with the fewest services so far wins (ties: the order of the nodes). Services that
    /// ask for nothing go to `spread` when given (for example only the edge nodes).
    package static func assign(_ services: [(name: String, placement: PlacementIR?)], nodes: [PlacementNode],
                              spread: [String]? = nil) throws(PlacementFailure) -> [String: String] {
        guard !nodes.isEmpty else { throw PlacementFailure(description: "there are no nodes to place services on") }
        var assigned: [String: String] = [:]
        var load: [String: Int] = [:]
        let byName = Dictionary(services.map { ($0.name, $0.placement) }, uniquingKeysWith: { first, _ in first })
        func place(_ name: String, visiting: Set<String>) throws(PlacementFailure) -> String {
            if let node = assigned[name] { return node }
            let placement = byName[name] ?? nil
            let unconstrained = placement?.node == nil && placement?.label == nil && placement?.near == nil
            let pool = unconstrained && spread != nil ? nodes.filter { spread!.contains($0.name) } : nodes
            let allowed = candidates(placement, among: pool)
            guard !allowed.isEmpty else {
                throw PlacementFailure(description: "'\(name)' asks for \(describe(placement)), and no node fits; the nodes are: \(nodes.map(\.shown).joined(separator: ", "))")
            }
            var chosen: String
            if let near = placement?.near {
                guard byName[near] != nil else { throw PlacementFailure(description: "'\(name)' is placed near '\(near)', which is not a service of this app") }
                guard !visiting.contains(near) else { throw PlacementFailure(description: "'\(name)' and '\(near)' are placed near each other in a circle") }
                chosen = try place(near, visiting: visiting.union([name]))
                guard allowed.contains(where: { $0.name == chosen }) else {
                    throw PlacementFailure(description: "'\(name)' must be near '\(near)' on \(chosen), but it also asks for \([placement?.node.map { "node \($0)" }, placement?.label.map { "label \($0)" }].compactMap { $0 }.joined(separator: " and ")), which \(chosen) does not offer")
                }
            } else {
                chosen = allowed[0].name
                for node in allowed where load[node.name, default: 0] < load[chosen, default: 0] { chosen = node.name }
            }
            assigned[name] = chosen
            load[chosen, default: 0] += 1
            return chosen
        }
        for service in services { _ = try place(service.name, visiting: []) }
        return assigned
    }
}

extension AppIR {
    /// This app with `service` pinned to `node` (`dyninka deploy --move`): its placement's node
    /// becomes `node`, a label it asks for stays (a node that lacks it is reported before
    /// applying), and `near:` is dropped, since the move decides where it goes. Only that
    /// service's deployment changes.
    package func moving(_ service: String, to node: String) throws(PlacementFailure) -> AppIR {
        guard let index = services.firstIndex(where: { $0.name == service }) else {
            throw PlacementFailure(description: "no service '\(service)' to move; the app has \(services.map(\.name).joined(separator: ", "))")
        }
        var moved = self
        moved.services[index].placement = PlacementIR(node: node, label: services[index].placement?.label, near: nil)
        return moved
    }
}

/// Which services share a process (fusion). A group's host serves all of them and runs a route's
/// next step in process when it is one of them; a group of one is an ordinary host.
package enum Fusion: String, Sendable, CaseIterable {
    /// One process per service.
    case none
    /// Services that share a node share a process, except those marked `@Service(isolated: true)`.
    case auto

    /// The groups of `services` (table order): with `auto`, the services whose `node` is the same
    /// (nil: this machine, where all are together) form one group, and each isolated service is
    /// a group of its own. The group holding `entry` lists it first, so that its `/` runs it;
    /// groups come in the order of their first service.
    package func groups(_ services: [ServiceIR], entry: String, node: (String) -> String? = { _ in nil }) -> [[String]] {
        guard self == .auto else { return services.map { [$0.name] } }
        var groups: [[String]] = []
        var byNode: [String: Int] = [:]
        for service in services {
            if service.isolated == true {
                groups.append([service.name])
                continue
            }
            let key = node(service.name) ?? ""
            if let index = byNode[key] {
                groups[index].append(service.name)
            } else {
                byNode[key] = groups.count
                groups.append([service.name])
            }
        }
        return groups.map { group in
            guard let at = group.firstIndex(of: entry), at > 0 else { return group }
            var ordered = group
            ordered.remove(at: at)
            return [entry] + ordered
        }
    }

    /// The groups a deployment can promise before any scheduler runs: services joined by `near:`
    /// (the other's node, transitively) or pinned to the same `node:`, unless isolated. Labels
    /// promise no common node, so they join nothing.
    package func deployGroups(_ services: [ServiceIR], entry: String) -> [[String]] {
        guard self == .auto else { return services.map { [$0.name] } }
        var root: [String: String] = [:]
        for service in services { root[service.name] = service.name }
        func find(_ name: String) -> String {
            var name = name
            while let parent = root[name], parent != name { name = parent }
            return name
        }
        func join(_ a: String, _ b: String) { root[find(a)] = find(b) }
        var pinned: [String: String] = [:]
        for service in services where service.isolated != true {
            if let near = service.placement?.near, root[near] != nil, services.first(where: { $0.name == near })?.isolated != true {
                join(service.name, near)
            }
            if let node = service.placement?.node {
                if let other = pinned[node] { join(service.name, other) } else { pinned[node] = service.name }
            }
        }
        return groups(services, entry: entry) { find($0) }
    }
}
