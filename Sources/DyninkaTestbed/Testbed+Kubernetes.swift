import DyninkaSystem
import Foundation

/// A bed whose nodes are real Kubernetes nodes (`dyninka testbed up FILE --kubernetes`).
///
/// The Kubernetes kit (`../shared/k8s`, or `$DYNINKA_K8S_KIT`) runs the control plane and the
/// cluster DNS on this machine, beside the bed, as a managed cluster's control plane runs in a
/// region of its own: a management link (`dynbed-mgmt`, 10.77.0.1 here, 10.77.0.2 in the router)
/// joins the machine to the router, so the nodes reach the API server and kube-dns through the
/// router but over no emulated link. Every node of the bed (and `client`, tainted so that no pod
/// lands there) runs the kit's containerd, kubelet and kube-proxy inside its namespace; its pods
/// get 10.78.K.0/24, routed by the router to the node, so pod traffic between nodes crosses the
/// same router interfaces, and therefore the same delay, loss and rate, as process traffic.
extension Testbed {
    /// The cluster of a bed that is up with `--kubernetes`.
    package struct Cluster: Codable, Sendable, Equatable {
        /// The kit's folder (its `start`, `stop` and `node`).
        package var kit: String
        /// The kit's cache (builds) and this cluster's run folder.
        package var home: String
        package var run: String
        /// The admin kubeconfig (`https://10.77.0.1:PORT`).
        package var kubeconfig: String
        /// Images imported into every node (references), so a second deploy imports nothing.
        package var images: [String] = []

        /// The kit's settings for this cluster: its own run folder, ports and addresses, so that it
        /// never meets another cluster of the kit on this machine.
        package var environment: [String: String] {
            ["DYNINKA_K8S_HOME": home, "DYNINKA_K8S_RUN": run, "API_PORT": String(Testbed.apiPort), "ETCD_PORT": "34790",
             "ETCD_PEER_PORT": "34800", "API_BIND_ADDRESS": Testbed.managementAddress, "DNS": Testbed.managementAddress,
             "SERVICE_CIDR": Testbed.serviceNetwork, "NODE_CLUSTER_CIDR": Testbed.podNetwork]
        }
    }

    /// This machine's end of the management link: the API server and kube-dns listen here.
    package static let managementAddress = "10.77.0.1"
    /// The router's end of the management link.
    static let managementRouterAddress = "10.77.0.2"
    /// The management link's interfaces: this machine's, the router's.
    static let managementLink = "dynbed-mgmt", managementRouterLink = "dynbm"
    /// Every pod CIDR of the bed lies in this; node K's is 10.78.K.0/24.
    package static let podNetwork = "10.78.0.0/16"
    /// ClusterIPs.
    package static let serviceNetwork = "10.79.0.0/24"
    static let apiPort = 26643
    /// The taint that keeps pods off `client`.
    package static let clientTaint = "dyninka.io/client=true:NoSchedule"
    /// The cluster's files (inside the bed's state folder, so `down` removes them with it).
    static var clusterRun: String { stateDirectory + "/k8s" }
    /// Where `up` notes the kit before starting it, so that `down` can stop a half-started cluster.
    static var clusterNotePath: String { stateDirectory + "/cluster.json" }

    static func podCIDR(_ node: NodeState) -> String { "10.78.\(node.index).0/24" }

    /// The kit's folder: `explicit`, else `$DYNINKA_K8S_KIT`; it must hold `start` and `node`.
    package static func locateKit(_ explicit: String?) throws(TestbedFailure) -> String {
        guard let kit = explicit ?? ProcessInfo.processInfo.environment["DYNINKA_K8S_KIT"] else {
            throw TestbedFailure("--kubernetes needs the Kubernetes kit: pass --kit DIR or set DYNINKA_K8S_KIT to its folder (the one with start, stop and node)")
        }
        let path = URL(fileURLWithPath: kit).standardizedFileURL.path
        for tool in ["start", "stop", "node"] where !FileManager.default.isExecutableFile(atPath: path + "/" + tool) {
            throw TestbedFailure("\(path) is not the Kubernetes kit: it has no executable `\(tool)`")
        }
        return path
    }

    /// Starts the control plane and DNS on the management link and makes every node of `state`
    /// a real Kubernetes node. `up` calls it after the bed's namespaces and links exist; a failure
    /// is cleaned up by `up` (which calls `down`).
    static func startCluster(_ state: inout State, kit: String, log: (String) -> Void) throws(TestbedFailure) {
        let home = ProcessInfo.processInfo.environment["DYNINKA_K8S_HOME"] ?? NSHomeDirectory() + "/.cache/dyninka-k8s"
        var cluster = Cluster(kit: kit, home: home, run: clusterRun, kubeconfig: clusterRun + "/admin.kubeconfig")
        try saveClusterNote(cluster)
        // The management link, made in the router and moved out: the machine gets one interface,
        // with a route to the bed's nodes (the API server dials their kubelets) and none to pods.
        try run(["ip", "-n", coreNamespace, "link", "add", managementRouterLink, "type", "veth", "peer", "name", managementLink, "netns", "1"])
        try run(["ip", "addr", "add", managementAddress + "/24", "dev", managementLink])
        try run(["ip", "link", "set", managementLink, "up"])
        try run(["ip", "-n", coreNamespace, "addr", "add", managementRouterAddress + "/24", "dev", managementRouterLink])
        try run(["ip", "-n", coreNamespace, "link", "set", managementRouterLink, "up"])
        try run(["ip", "route", "add", "10.77.0.0/16", "via", managementRouterAddress, "dev", managementLink])
        for node in state.nodes {
            try run(["ip", "-n", coreNamespace, "route", "add", podCIDR(node), "via", node.address])
        }
        log("starting the control plane and kube-dns on \(managementAddress) (the kit in \(kit))")
        var started = Date()
        let output = try run([kit + "/start"], environment: cluster.environment)
        if let last = output.split(separator: "\n").last.map(String.init), FileManager.default.fileExists(atPath: last) { cluster.kubeconfig = last }
        log(String(format: "control plane up in %.1f s", Date().timeIntervalSince(started)))
        state.cluster = cluster
        try save(state)
        for node in state.nodes {
            started = Date()
            log("node \(node.name): containerd, kubelet and kube-proxy in \(node.namespace), pods on \(podCIDR(node))")
            try startNode(node, cluster: cluster)
            log(String(format: "node %@ Ready in %.1f s", node.name, Date().timeIntervalSince(started)))
        }
        // Names of the cluster resolve on every node of the bed (for `testbed exec`, and for
        // clients in `client`), after the bed's own names in its hosts file.
        try writeHosts(state, services: [])
    }

    /// Starts a node's daemons in its namespace (the kit's `node up`) and waits until it is Ready.
    static func startNode(_ node: NodeState, cluster: Cluster) throws(TestbedFailure) {
        var arguments = [cluster.kit + "/node", "up", node.name, "--ip", node.address, "--pod-cidr", podCIDR(node), "--netns", node.namespace]
        if node.name == TestbedSpec.clientNode {
            arguments += ["--labels", "dyninka.io/role=client", "--taints", clientTaint]
        } else if !node.labels.isEmpty {
            arguments += ["--labels", node.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")]
        }
        try run(arguments, environment: cluster.environment)
    }

    /// The processes of a Kubernetes node's containers: those in its kubelet's cgroup
    /// (`/dyninka-k8s-NODE-...`, the kit's cgroup root for it). They live in the pods' network
    /// namespaces, not the node's, so `processes(inNamespace:)` does not list them.
    static func containerProcesses(ofNode node: String) -> [Int32] {
        let marker = ":/dyninka-k8s-\(node)-"
        return ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry -> Int32? in
            guard let pid = Int32(entry), let groups = try? String(contentsOfFile: "/proc/\(entry)/cgroup", encoding: .utf8),
                  groups.contains(marker) else { return nil }
            return pid
        }
    }

    /// A Kubernetes node comes back after `kill`: the kit removes what the dead node left (its
    /// Node object too, so its lost pods are gone) and starts it again; it registers afresh, as a
    /// repaired machine would.
    static func reviveNode(_ node: NodeState, cluster: Cluster) throws(TestbedFailure) {
        _ = try? run([cluster.kit + "/node", "down", node.name], environment: cluster.environment)
        try startNode(node, cluster: cluster)
    }

    /// Stops a bed's cluster, if it has one (or began one): its nodes (pods, containers, mounts,
    /// bridges, rules), the control plane and DNS, the management link. Returns what it removed.
    static func stopCluster() -> [String] {
        var removed: [String] = []
        if let data = FileManager.default.contents(atPath: clusterNotePath), let cluster = try? JSONDecoder().decode(Cluster.self, from: data) {
            let environment = cluster.environment
            if (try? run([cluster.kit + "/node", "down", "--all"], environment: environment)) != nil { removed.append("the cluster's nodes") }
            if (try? run([cluster.kit + "/stop", "--purge"], environment: environment)) != nil { removed.append("its control plane and DNS") }
        }
        if (try? run(["ip", "link", "show", managementLink])) != nil, (try? run(["ip", "link", "del", managementLink])) != nil {
            removed.append("link \(managementLink)")
        }
        return removed
    }

    static func saveClusterNote(_ cluster: Cluster) throws(TestbedFailure) {
        do { try JSONEncoder().encode(cluster).write(to: URL(fileURLWithPath: clusterNotePath)) } catch {
            throw TestbedFailure("cannot write \(clusterNotePath): \(error.localizedDescription)")
        }
    }

    /// Makes an image (a docker-archive) available on every node of the bed's cluster, once per
    /// reference: the nodes' containerd pulls from no registry here, so the kit's `node import`
    /// loads it into each of them.
    package static func importImage(_ archive: String, reference: String, log: (String) -> Void) throws(TestbedFailure) {
        guard var state = current(), var cluster = state.cluster else {
            throw TestbedFailure("no test bed with a cluster is up (start one with `dyninka testbed up FILE --kubernetes`)")
        }
        guard !cluster.images.contains(reference) else {
            log("image \(reference) is on every node already")
            return
        }
        let started = Date()
        try run([cluster.kit + "/node", "import", archive, "--all"], environment: cluster.environment)
        log(String(format: "imported %@ into the %d nodes in %.1f s (kit: node import)", reference, state.nodes.count, Date().timeIntervalSince(started)))
        cluster.images.append(reference)
        state.cluster = cluster
        try save(state)
    }

    /// The bed's cluster when `kubeconfig` (a path, e.g. `$KUBECONFIG`) is its kubeconfig.
    package static func cluster(forKubeconfig kubeconfig: String?) -> Cluster? {
        guard let kubeconfig, let cluster = current()?.cluster else { return nil }
        let resolve = { (path: String) in URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL.path }
        return resolve(kubeconfig) == resolve(cluster.kubeconfig) ? cluster : nil
    }
}
