import DyninkaSystem
import Foundation
import Testing

/// The Kubernetes kit (../shared/k8s, given by scripts/test as DYNINKA_K8S_KIT) whose `node`
/// command runs real nodes: containerd, runc, a kubelet and kube-proxy, and kube-dns.
let realNodeKit: String? = {
    guard getuid() == 0, let kit = ProcessInfo.processInfo.environment["DYNINKA_K8S_KIT"],
          FileManager.default.isExecutableFile(atPath: kit + "/node") else { return nil }
    return kit
}()

/// A cluster of the kit with one real node, of its own (run folder, ports, addresses): a veth
/// pair gives the API server and the node an address that pods and the node's namespace reach.
/// `stop` removes the namespace, the pods, the node, the control plane and the links.
final class RealNodeCluster {
    let kit: String
    let environment: [String: String]
    let namespace = "dk-pods-\(getpid() % 100_000)"
    let hostLink = "dkp\(getpid() % 100_000)h", nodeLink = "dkp\(getpid() % 100_000)n"
    let hostIP = "10.232.255.1", peerIP = "10.232.255.2"
    private(set) var kubeconfig = ""

    init(kit: String) throws {
        self.kit = kit
        let home = ProcessInfo.processInfo.environment["DYNINKA_K8S_HOME"] ?? NSHomeDirectory() + "/.cache/dyninka-k8s"
        environment = ["DYNINKA_K8S_HOME": home, "DYNINKA_K8S_RUN": home + "/run-real-pods", "API_PORT": "26543", "ETCD_PORT": "33890",
                       "ETCD_PEER_PORT": "33900", "API_BIND_ADDRESS": hostIP, "DNS": hostIP, "SERVICE_CIDR": "10.96.0.0/24"]
        do {
            try Self.sh("ip netns add \(namespace) && ip link add \(hostLink) type veth peer name \(nodeLink) && ip link set \(nodeLink) netns \(namespace) && ip addr add \(hostIP)/30 dev \(hostLink) && ip link set \(hostLink) up && ip -n \(namespace) addr add \(peerIP)/30 dev \(nodeLink) && ip -n \(namespace) link set \(nodeLink) up")
            // The first start with DNS builds kubelet, kube-proxy and kube-dns once per machine (about 4 min).
            FileHandle.standardError.write(Data("real pods: starting a control plane with kube-dns on \(hostIP)\n".utf8))
            // Its last stdout line is the kubeconfig; a failed start throws with its stderr.
            kubeconfig = try Self.sh("'\(kit)/start'", environment: environment)
                .split(separator: "\n").last.map(String.init) ?? ""
            FileHandle.standardError.write(Data("real pods: node-a up (containerd, kubelet, kube-proxy)\n".utf8))
            try Self.sh("'\(kit)/node' up node-a --ip \(hostIP) --pod-cidr 10.232.1.0/24 --labels zone=roof", environment: environment)
        } catch {
            stop()
            throw error
        }
    }

    func kubectl(_ arguments: String) throws -> String {
        try Self.sh("'\(environment["DYNINKA_K8S_HOME"]!)/venv/bin/kubectl' --kubeconfig '\(kubeconfig)' \(arguments)")
    }

    func importImage(_ archive: String) throws { try Self.sh("'\(kit)/node' import '\(archive)'", environment: environment) }

    func stop() {
        _ = try? Self.sh("'\(kit)/node' down --all; '\(kit)/stop' --purge", environment: environment)
        _ = try? Self.sh("ip link del \(hostLink); ip netns del \(namespace)")
    }

    struct Failed: Error, CustomStringConvertible { var description: String }

    /// Runs `command` with /bin/sh; its stdout, or an error with what it wrote to stderr when it
    /// fails. `Command.run` captures into files (daemons the command starts may keep them open; a
    /// pipe would never end) and waits for the shell itself.
    @discardableResult
    static func sh(_ command: String, environment: [String: String] = [:]) throws -> String {
        let output: CommandOutput
        do { output = try Command.run("/bin/sh", ["-c", command], environment: environment) } catch {
            throw Failed(description: "cannot run /bin/sh: \(error)")
        }
        guard output.status == 0 else {
            throw Failed(description: "`\(command)` exited \(output.status): \(output.stderr.suffix(2000))")
        }
        return output.stdout
    }
}

/// The app in real pods: the offline image imported into a real node, `dyninka deploy --apply`
/// on a control plane whose kubelet runs containers, the readiness probes gating endpoints, the
/// chain running point to point by Service names through kube-dns and kube-proxy.
@Suite(.serialized, .enabled(if: realNodeKit != nil, "needs root and the Kubernetes kit with real nodes (scripts/test sets DYNINKA_K8S_KIT)"))
struct RealPodsTests {
    @Test func buildingAlertsRunsInRealPodsAndAnswersAsItDoesLocally() throws {
        let cluster = try RealNodeCluster(kit: realNodeKit!)
        defer { cluster.stop() }
        let folder = NSTemporaryDirectory() + "dyninka-real-pods-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let image = try runCLI(["image", "examples/BuildingAlerts/App.swift", "--output", folder])
        #expect(image.status == 0, "\(image.stderr)")
        let reference = try #require(image.stdout.split(separator: "\n").first { $0.hasPrefix("image ") }).dropFirst(6)
        try cluster.importImage(folder + "/BuildingAlerts.image.tar")

        let deployed = try runCLI(["deploy", "examples/BuildingAlerts/App.swift", "--apply", "--namespace", "fog", "--image", String(reference),
                                   "--timeout", "180"], environment: ["KUBECONFIG": cluster.kubeconfig, "MARATHON_URL": "", "KUBERNETES_SERVICE_HOST": ""])
        #expect(deployed.status == 0, "\(deployed.stdout)\n\(deployed.stderr)")
        // Every service in a Running, Ready pod (a real container) on the node its placement allows.
        let pods = try cluster.kubectl("-n fog get pods -o jsonpath='{range .items[*]}{.metadata.labels.app\\.kubernetes\\.io/name} {.status.phase} {.status.containerStatuses[0].ready} {.spec.nodeName} {.status.containerStatuses[0].containerID}{\"\\n\"}{end}'")
        let rows = pods.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(Set(rows.map { $0[0] }) == ["validate", "assess", "weather", "alert"], "\(pods)")
        for row in rows {
            #expect(row.count == 5 && row[1] == "Running" && row[2] == "true" && row[3] == "node-a" && row[4].hasPrefix("containerd://"), "\(row)")
        }
        // The readiness probe's endpoints, and the entry's ClusterIP through kube-proxy.
        let endpoints = try cluster.kubectl("-n fog get endpoints building-alerts-validate -o jsonpath='{.subsets[0].addresses[0].ip}'")
        #expect(endpoints.hasPrefix("10.232.1."), "\(endpoints)")
        let vip = try cluster.kubectl("-n fog get svc building-alerts-validate -o jsonpath='{.spec.clusterIP}'")
        func post(_ body: String) throws -> String {
            try RealNodeCluster.sh("curl -s -m 10 -w ' %{http_code}' -X POST -d '\(body)' http://\(vip):8080/")
        }
        // The same answers as the chain gives on this machine (CLITests): an alert, a dropped
        // item, and a faulty sensor named by the service that refused it.
        #expect(try post(#"{"room":"r1","celsius":29}"#) == #"{"room":"r1","message":"room r1 is 29.0 °C with 31.5 °C outside"} 200"#)
        #expect(try post(#"{"room":"r2","celsius":20}"#) == " 204")
        let faulty = try post(#"{"room":"r3","celsius":99}"#)
        #expect(faulty.hasSuffix(" 500") && faulty.contains(#""service":"validate""#) && faulty.contains("faulty"), "\(faulty)")
    }
}
