import Foundation

/// `dyninka guard`: keeps `kubectl drain` lossless for the app's pods, and for @Placed state.
///
/// Every unit's PodDisruptionBudget (`maxUnavailable: 0`) refuses every eviction, so a drain
/// cannot stop a pod before its successor is ready (an evicted single replica leaves callers
/// without an endpoint, and a stateful one's state waiting in a terminating pod). The guard
/// watches for cordoned nodes
/// (`kubectl drain` cordons first) and moves each such pod by a rollout (`kubectl rollout
/// restart`): the scheduler puts the new pod on a node that is not cordoned, the new pod takes the
/// state over from the old one as in any rollout, and the Deployment deletes the old pod, which
/// the drain then finds gone. What cannot move (placed on that very node by `@Service(node:)`, or
/// no other node fits) stays where it is, and the guard says why: the drain keeps waiting, as it
/// must, until the node is uncordoned or the service is moved elsewhere by a deploy.
package struct DrainGuard {
    /// A unit a deploy wrote a PodDisruptionBudget for: the budget names its Deployment.
    package struct Unit: Equatable, Sendable {
        package var namespace: String
        /// The Deployment (and PodDisruptionBudget) name.
        package var deployment: String
        /// The node its template's node selector names (`kubernetes.io/hostname`), if any.
        package var pinnedTo: String?

        package init(namespace: String, deployment: String, pinnedTo: String? = nil) {
            self.namespace = namespace
            self.deployment = deployment
            self.pinnedTo = pinnedTo
        }

        /// `namespace/deployment`, for messages and keys.
        package var key: String { "\(namespace)/\(deployment)" }
    }

    /// What the guard needs of one pod.
    package struct PodView: Equatable, Sendable {
        package var namespace: String
        package var name: String
        /// Its `app.kubernetes.io/instance` label: the Deployment's name.
        package var instance: String
        /// Where it runs (nil: not scheduled yet).
        package var node: String?
        package var terminating: Bool
        package var ready: Bool
        /// Why it is not scheduled (the scheduler's message), when it is not.
        package var unscheduled: String?

        package init(namespace: String, name: String, instance: String, node: String?, terminating: Bool = false,
                     ready: Bool = true, unscheduled: String? = nil) {
            self.namespace = namespace
            self.name = name
            self.instance = instance
            self.node = node
            self.terminating = terminating
            self.ready = ready
            self.unscheduled = unscheduled
        }
    }

    /// What one pass decides for a unit.
    package enum Action: Equatable, Sendable {
        /// Roll the unit: its pod `pod` runs on the cordoned node `from`.
        case move(Unit, pod: String, from: String)
        /// The unit is placed on the cordoned node: it cannot move, and the drain waits.
        case pinned(Unit, node: String)
        /// A move is under way: the successor is not ready yet (`why`).
        case waiting(Unit, why: String)
        /// The unit no longer has a pod on a cordoned node: the successor runs on `node`.
        case moved(Unit, pod: String, node: String)
    }

    /// Seconds after a restart before the guard restarts the same unit again (the Deployment
    /// controller has not made the surge pod yet in the first moments).
    package static let restartSpacing: TimeInterval = 60

    /// One pass, pure: `cordoned` nodes, the `units`, their `pods`, and when the guard
    /// restarted which unit (`restarted`, by key). Units are visited in key order.
    package static func plan(cordoned: Set<String>, units: [Unit], pods: [PodView], restarted: [String: Date],
                             now: Date = Date()) -> [Action] {
        var actions: [Action] = []
        for unit in units.sorted(by: { $0.key < $1.key }) {
            let own = pods.filter { $0.namespace == unit.namespace && $0.instance == unit.deployment }
            let stranded = own.filter { !$0.terminating && $0.node.map(cordoned.contains) == true }
            let successors = own.filter { !$0.terminating && $0.node.map(cordoned.contains) != true }
            guard let pod = stranded.first, let node = pod.node else {
                // Moved by the guard: the successor is the unit's pod now.
                if restarted[unit.key] != nil, let next = successors.first(where: \.ready), let where_ = next.node {
                    actions.append(.moved(unit, pod: next.name, node: where_))
                }
                continue
            }
            if unit.pinnedTo == node {
                actions.append(.pinned(unit, node: node))
                continue
            }
            if let successor = successors.first {
                let why: String
                if let unscheduled = successor.unscheduled {
                    why = "its new pod \(successor.name) is not scheduled: \(unscheduled)"
                } else if successor.node == nil {
                    why = "its new pod \(successor.name) waits for a node"
                } else {
                    why = "its new pod \(successor.name) on \(successor.node!) is taking the state over"
                }
                actions.append(.waiting(unit, why: why))
                continue
            }
            if let last = restarted[unit.key], now.timeIntervalSince(last) < restartSpacing {
                actions.append(.waiting(unit, why: "restarted \(Int(now.timeIntervalSince(last))) s ago; no new pod yet"))
                continue
            }
            actions.append(.move(unit, pod: pod.name, from: node))
        }
        return actions
    }

    /// The objects the guard reads, through kubectl.
    package let kubectl: Kubectl
    /// One namespace, or nil: all.
    package let namespace: String?
    /// When the guard restarted which unit.
    package private(set) var restarted: [String: Date] = [:]
    /// What it said last per unit (it says a thing once, and again only when it changes).
    private var said: [String: String] = [:]

    package init(kubectl: Kubectl, namespace: String?) {
        self.kubectl = kubectl
        self.namespace = namespace
    }

    private var scope: [String] { namespace.map { ["-n", $0] } ?? ["--all-namespaces"] }

    /// Nodes that take no new pods.
    func cordonedNodes() throws(KubectlFailure) -> Set<String> {
        Set(try kubectl.json(Kube.List<Kube.Node>.self, ["get", "nodes"]).items.filter { $0.spec?.unschedulable == true }.map(\.metadata.name))
    }

    /// The units: every PodDisruptionBudget a dyninka deploy wrote, with its
    /// Deployment's node selector.
    func units() throws(KubectlFailure) -> [Unit] {
        let budgets = try kubectl.json(Kube.List<Kube.Object>.self, ["get", "poddisruptionbudgets"] + scope + ["-l", "app.kubernetes.io/managed-by=dyninka"]).items
            .filter { $0.metadata.annotations?[KubernetesManifests.guardAnnotation] != nil }
        guard !budgets.isEmpty else { return [] }
        let deployments = try kubectl.json(Kube.List<Kube.Deployment>.self, ["get", "deployments"] + scope + ["-l", "app.kubernetes.io/managed-by=dyninka"]).items
        return budgets.map { budget in
            let namespace = budget.metadata.namespace ?? self.namespace ?? "default"
            let deployment = deployments.first { $0.metadata.name == budget.metadata.name && ($0.metadata.namespace ?? namespace) == namespace }
            return Unit(namespace: namespace, deployment: budget.metadata.name,
                        pinnedTo: deployment?.spec?.template?.spec?.nodeSelector?["kubernetes.io/hostname"])
        }
    }

    /// The dyninka pods, as the guard sees them.
    func pods() throws(KubectlFailure) -> [PodView] {
        try kubectl.json(Kube.List<Kube.Pod>.self, ["get", "pods"] + scope + ["-l", "app.kubernetes.io/managed-by=dyninka"]).items.map { pod in
            let scheduled = pod.status?.conditions?.first { $0.type == "PodScheduled" }
            return PodView(namespace: pod.metadata.namespace ?? namespace ?? "default", name: pod.metadata.name,
                           instance: pod.metadata.labels?["app.kubernetes.io/instance"] ?? "", node: pod.spec?.nodeName,
                           terminating: pod.metadata.deletionTimestamp != nil, ready: pod.ready,
                           unscheduled: scheduled?.status == "False" ? (scheduled?.message ?? scheduled?.reason ?? "unschedulable") : nil)
        }
    }

    /// One pass: reads the cluster, restarts what must move, and tells `say` what changed since
    /// the last pass. Returns the actions.
    @discardableResult
    package mutating func pass(say: (String) -> Void) throws(KubectlFailure) -> [Action] {
        let cordoned = try cordonedNodes()
        // Nothing to guard while no node is cordoned (the usual case): one call per pass.
        guard !cordoned.isEmpty || !restarted.isEmpty else { return [] }
        let units = try units()
        let actions = Self.plan(cordoned: cordoned, units: units, pods: try pods(), restarted: restarted)
        for action in actions {
            switch action {
            case .move(let unit, let pod, let node):
                try kubectl.run(["rollout", "restart", "deployment/\(unit.deployment)", "-n", unit.namespace])
                restarted[unit.key] = Date()
                tell(unit, "node \(node) is cordoned: moving \(unit.key) (pod \(pod)) by a rollout; its new pod starts elsewhere and is ready (with the @Placed state, if it has any) before the old one stops", say)
            case .pinned(let unit, let node):
                tell(unit, "\(unit.key) is placed on node \(node) (@Service(node:) or deploy --move), which is cordoned: it stays, and a drain of \(node) waits for it. Uncordon \(node), or move it: dyninka deploy FILE --apply --move SERVICE --to NODE", say)
            case .waiting(let unit, let why):
                tell(unit, "\(unit.key): \(why)", say)
            case .moved(let unit, let pod, let node):
                restarted[unit.key] = nil
                let outcome = handOverLine(namespace: unit.namespace, pod: pod)
                say("\(unit.key) moved to node \(node) (pod \(pod))" + (outcome.map { ": \($0)" } ?? ""))
                said[unit.key] = nil
            }
        }
        return actions
    }

    /// Says `line` for `unit` unless it said just that last.
    private mutating func tell(_ unit: Unit, _ line: String, _ say: (String) -> Void) {
        guard said[unit.key] != line else { return }
        said[unit.key] = line
        say(line)
    }

    /// What a new pod logged about the state it took over.
    func handOverLine(namespace: String, pod: String) -> String? {
        let logs = (try? kubectl.run(["logs", "-n", namespace, pod, "-c", "dyninka-host", "--tail=200"])) ?? ""
        return KubernetesApply.handOverLines(logs).last
    }
}
