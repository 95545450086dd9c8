import DyninkaDeploy
import DyninkaSystem
import DyninkaTestbed
import Foundation
import Testing

/// The admin kubeconfig of a real control plane (`../shared/k8s`, started by scripts/test with
/// nodes cloud, edge-1 zone=roof and edge-2 zone=street). Without it these tests are skipped.
let clusterKubeconfig = ProcessInfo.processInfo.environment["DYNINKA_K8S_KUBECONFIG"]

/// `dyninka deploy` against a real Kubernetes API server, controllers and scheduler (no
/// container runs: a stand-in kubelet marks scheduled pods Running). Each test uses namespaces
/// of its own and removes them.
@Suite(.serialized, .enabled(if: clusterKubeconfig != nil, "needs a cluster: scripts/test starts ../shared/k8s and sets DYNINKA_K8S_KUBECONFIG"))
struct KubernetesTests {
    var admin: String { clusterKubeconfig ?? "" }

    func deploy(_ arguments: [String], kubeconfig: String? = nil) throws -> Ran {
        try runCLI(["deploy"] + arguments, environment: ["KUBECONFIG": kubeconfig ?? admin, "MARATHON_URL": "", "KUBERNETES_SERVICE_HOST": ""])
    }

    func kubectl() throws -> Kubectl { try Kubectl(context: nil, kubeconfig: admin) }

    func cluster(_ namespace: String) throws -> KubernetesCluster { try KubernetesCluster.connect(try kubectl(), namespace: namespace) }

    /// A namespace name for this run.
    func namespace(_ tag: String) -> String { "dyninka-test-\(tag)-\(getpid())" }

    /// Removes a namespace and all in it (not waiting).
    func cleanup(_ namespaces: String...) {
        for namespace in namespaces { _ = try? kubectl().call(["delete", "namespace", namespace, "--wait=false"]) }
    }

    /// A copy of an app file in a fresh folder, so that edits leave the repository alone.
    func copy(_ file: String, tag: String) throws -> String {
        let folder = NSTemporaryDirectory() + "dyninka-k8s-\(tag)-\(getpid())"
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/App.swift"
        try FileManager.default.copyItem(atPath: "\(root)/\(file)", toPath: path)
        return path
    }

    func edit(_ path: String, _ old: String, _ new: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains(old), "the edit must change the file")
        try text.replacingOccurrences(of: old, with: new).write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Revision of each of the app's Deployments, by service.
    func revisions(_ namespace: String, app: String) throws -> [String: Int] {
        try cluster(namespace).deployments(app: app).mapValues(\.revision)
    }

    /// The node of each service's running pod.
    func nodes(_ namespace: String, app: String) throws -> [String: String] {
        var nodes: [String: String] = [:]
        for pod in try cluster(namespace).pods(app: app) where pod.ready {
            if let name = pod.metadata.labels?["app.kubernetes.io/name"], let node = pod.spec?.nodeName { nodes[name] = node }
        }
        return nodes
    }

    @Test func deployCreatesTheNamespaceWaitsForTheRolloutAndRollsOnlyWhatChanged() throws {
        let file = try copy("examples/SmartBuilding/App.swift", tag: "roll")
        let out = (file as NSString).deletingLastPathComponent + "/deploy"
        let (first, second) = (namespace("roll"), namespace("roll2"))
        defer { cleanup(first, second) }

        let created = try deploy([file, "--out", out, "--apply", "--namespace", first])
        #expect(created.status == 0, "\(created.stderr)")
        #expect(created.stderr.contains("target: kubernetes (kubeconfig \(admin) has current context"))
        #expect(created.stderr.contains("created namespace '\(first)'"))
        #expect(created.stderr.contains("changed on the cluster: get, filterTemperature, map, movingAvg"))
        #expect(created.stderr.contains("checking 4 manifests with the server (dry run, strict field validation)"))
        for name in ["get", "filter-temperature", "map", "moving-avg"] {
            #expect(created.stderr.contains("smart-building-\(name): 1/1 updated, 1/1 available (revision 1, rolled out)"))
        }
        #expect(created.stdout.contains("smart-building in context 'dyninka-k8s', namespace '\(first)'"))
        let live = try cluster(first).deployments(app: "smart-building")
        #expect(live.keys.sorted() == ["filterTemperature", "get", "map", "movingAvg"])
        #expect(live.values.allSatisfy { $0.rolledOut && $0.revision == 1 })
        // @Service(near: "map"): the scheduler put movingAvg on map's node.
        let placed = try nodes(first, app: "smart-building")
        #expect(placed["moving-avg"] != nil && placed["moving-avg"] == placed["map"], "\(placed)")

        // Nothing changed: nothing is applied.
        let again = try deploy([file, "--out", out, "--apply", "--namespace", first])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.contains("changed on the cluster: none"))
        #expect(!again.stderr.contains("serverside-applied"))

        // One function edited: exactly its Deployment gets a new ReplicaSet.
        try edit(file, "Temperature(value: value)", "Temperature(value: value + 0)")
        let edited = try deploy([file, "--out", out, "--apply", "--namespace", first])
        #expect(edited.status == 0, "\(edited.stderr)")
        #expect(edited.stderr.contains("changed on the cluster: map\n"))
        #expect(edited.stderr.contains("unchanged (not applied, not rolled): get, filterTemperature, movingAvg"))
        #expect(edited.stderr.contains("smart-building-map: 1/1 updated, 1/1 available (revision 2, rolled out)"))
        #expect(try revisions(first, app: "smart-building") == ["get": 1, "filterTemperature": 1, "map": 2, "movingAvg": 1])
        let sets = try kubectl().json(Kube.List<Kube.Object>.self, ["get", "replicasets", "-n", first, "-l", KubernetesCluster.selector(app: "smart-building")])
        let perDeployment = Dictionary(grouping: sets.items, by: { $0.metadata.labels?["app.kubernetes.io/name"] ?? "?" }).mapValues(\.count)
        #expect(perDeployment == ["get": 1, "filter-temperature": 1, "map": 2, "moving-avg": 1])

        // The cluster is the record: a new namespace gets everything.
        let elsewhere = try deploy([file, "--out", out, "--apply", "--namespace", second])
        #expect(elsewhere.status == 0, "\(elsewhere.stderr)")
        #expect(elsewhere.stderr.contains("changed on the cluster: get, filterTemperature, map, movingAvg"))
        #expect(try revisions(second, app: "smart-building") == ["get": 1, "filterTemperature": 1, "map": 1, "movingAvg": 1])

        // --delete removes what the deploys created, namespace included (it was made for the app).
        let removed = try deploy([file, "--delete", "--namespace", first])
        #expect(removed.status == 0, "\(removed.stderr)")
        #expect(removed.stdout.contains("deployment.apps \"smart-building-map\" deleted"))
        #expect(removed.stdout.contains("service \"smart-building-get\" deleted"))
        #expect(removed.stdout.contains("namespace/\(first) deleted"))
        #expect(try cluster(first).pods(app: "smart-building").isEmpty)
        // The other namespace is untouched.
        #expect(try cluster(second).deployments(app: "smart-building").count == 4)
    }

    @Test func deleteRemovesOnlyTheApp() throws {
        let space = namespace("delete")
        defer { cleanup(space) }
        let kubectl = try kubectl()
        try kubectl.run(["create", "namespace", space])
        // Something that is not the app's: it stays, and so does the namespace dyninka did not create.
        try kubectl.run(["create", "service", "clusterip", "other", "--tcp=80:80", "-n", space])
        let deployed = try deploy(["examples/BuildingAlerts/App.swift", "--out", NSTemporaryDirectory() + "dyninka-k8s-delete-\(getpid())",
                                   "--apply", "--namespace", space])
        #expect(deployed.status == 0, "\(deployed.stderr)")
        #expect(!deployed.stderr.contains("created namespace"))
        let removed = try deploy(["examples/BuildingAlerts/App.swift", "--delete", "--namespace", space])
        #expect(removed.status == 0, "\(removed.stderr)")
        #expect(removed.stdout.contains("deployment.apps \"building-alerts-assess\" deleted"))
        #expect(try cluster(space).deployments(app: "building-alerts").isEmpty)
        #expect(try kubectl.call(["get", "service", "other", "-n", space]).status == 0)
        #expect(try kubectl.call(["get", "namespace", space]).status == 0)
        // Deleting again finds nothing and says so.
        let nothing = try deploy(["examples/BuildingAlerts/App.swift", "--delete", "--namespace", space])
        #expect(nothing.status == 0)
        #expect(nothing.stderr.contains("nothing of building-alerts is deployed in namespace '\(space)'"))
    }

    @Test func aNamespaceTheAppCreatedIsKeptWhileItHoldsAnythingElse() throws {
        let space = namespace("keep")
        defer { cleanup(space) }
        let kubectl = try kubectl()
        let out = NSTemporaryDirectory() + "dyninka-k8s-keep-\(getpid())"
        let deployed = try deploy(["examples/BuildingAlerts/App.swift", "--out", out, "--apply", "--namespace", space])
        #expect(deployed.status == 0, "\(deployed.stderr)")
        #expect(deployed.stderr.contains("created namespace '\(space)'") && deployed.stderr.contains("created the app key's Secret 'building-alerts-app-key'"),
                "\(deployed.stderr)")
        // Kinds the old check did not look at: a PersistentVolumeClaim and a ServiceAccount of someone else's.
        try kubectl.run(["create", "-n", space, "-f", "-"], input: """
            apiVersion: v1
            kind: PersistentVolumeClaim
            metadata: {name: data}
            spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Mi}}}
            """)
        try kubectl.run(["create", "serviceaccount", "someone", "-n", space])
        let removed = try deploy(["examples/BuildingAlerts/App.swift", "--delete", "--namespace", space])
        #expect(removed.status == 0, "\(removed.stderr)")
        #expect(removed.stdout.contains("namespace/\(space) kept") && removed.stdout.contains("persistentvolumeclaim/data")
                && removed.stdout.contains("serviceaccount/someone"), "\(removed.stdout)")
        #expect(try kubectl.call(["get", "namespace", space]).status == 0)
        #expect(try kubectl.call(["get", "secret", "building-alerts-app-key", "-n", space]).status != 0, "the app's key went with the app")
        // Once only the app's own leftovers remain, the namespace goes.
        try kubectl.run(["delete", "pvc", "data", "-n", space])
        try kubectl.run(["delete", "serviceaccount", "someone", "-n", space])
        let again = try deploy(["examples/BuildingAlerts/App.swift", "--delete", "--namespace", space])
        #expect(again.stdout.contains("namespace/\(space) deleted"), "\(again.stdout)\(again.stderr)")
    }

    @Test func anEditOfMainRollsOnlyTheServicesWhoseRouteChanged() throws {
        let file = try copy("examples/BuildingAlerts/App.swift", tag: "chain")
        let out = (file as NSString).deletingLastPathComponent + "/deploy"
        let space = namespace("chain")
        defer { cleanup(space) }
        let first = try deploy([file, "--out", out, "--apply", "--namespace", space])
        #expect(first.status == 0, "\(first.stderr)")
        // @Service(label: "zone=roof"): the roof node.
        #expect(try nodes(space, app: "building-alerts")["weather"] == "edge-1")
        // The threshold is an argument in main's chain: it is part of validate's route (what
        // follows validate), not of any function's code.
        try edit(file, "threshold: 26.0", "threshold: 27.5")
        let second = try deploy([file, "--out", out, "--apply", "--namespace", space])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stderr.contains("changed on the cluster: validate\n"))
        #expect(try revisions(space, app: "building-alerts") == ["weather": 1, "validate": 2, "assess": 1, "alert": 1])
        let route = try cluster(space).deployments(app: "building-alerts")["validate"]?.metadata.name
        let template = try kubectl().run(["get", "deployment", route ?? "?", "-n", space, "-o", "jsonpath={.spec.template.metadata.annotations.dyninka\\.io/route}"])
        #expect(template == "assess(weather: weather(), threshold: 27.5).alert()")
    }

    @Test func theSchedulerPlacesPodsWhereTheFileSays() throws {
        let space = namespace("place")
        defer { cleanup(space) }
        let ran = try deploy(["Tests/Fixtures/Apps/Placement.swift", "--out", NSTemporaryDirectory() + "dyninka-k8s-place-\(getpid())",
                              "--apply", "--namespace", space])
        #expect(ran.status == 0, "\(ran.stderr)")
        let placed = try nodes(space, app: "placement")
        #expect(placed["capture"] == "edge-2", "@Service(node: \"edge-2\"): \(placed)")
        #expect(placed["detect"] == "edge-1", "@Service(label: \"zone=roof\"): \(placed)")
        #expect(placed["blur"] == placed["capture"], "@Service(near: \"capture\"): \(placed)")
        #expect(placed["report"] != nil, "scheduled somewhere: \(placed)")
        // The summary shows the same nodes.
        #expect(ran.stdout.contains("capture  placement-capture  1         1/1    edge-2"), "\(ran.stdout)")

        // dyninka deploy --move: only that Deployment's node selector changes, and only it rolls.
        let moved = try deploy(["Tests/Fixtures/Apps/Placement.swift", "--out", NSTemporaryDirectory() + "dyninka-k8s-place-\(getpid())",
                                "--apply", "--namespace", space, "--move", "report", "--to", "cloud"])
        #expect(moved.status == 0, "\(moved.stderr)")
        #expect(moved.stderr.contains("changed on the cluster: report\n"), "\(moved.stderr)")
        #expect(moved.stderr.contains("the next deploy without --move puts report back"), "\(moved.stderr)")
        #expect(try nodes(space, app: "placement")["report"] == "cloud")
        #expect(try revisions(space, app: "placement") == ["capture": 1, "detect": 1, "blur": 1, "report": 2])
    }

    @Test func autoscalersAreAcceptedAndRefusedForPlacedState() throws {
        let space = namespace("hpa")
        defer { cleanup(space) }
        let out = NSTemporaryDirectory() + "dyninka-k8s-hpa-\(getpid())"
        let ran = try deploy(["examples/SmartBuilding/App.swift", "--out", out, "--apply", "--namespace", space, "--autoscale", "1:3"])
        #expect(ran.status == 0, "\(ran.stderr)")
        #expect(ran.stderr.contains("no autoscaler for 'movingAvg': it owns @Placed state (count, average), which lives in one process"))
        let hpas = try kubectl().json(Kube.List<Kube.Object>.self, ["get", "horizontalpodautoscalers.v2.autoscaling", "-n", space])
        #expect(hpas.items.map(\.metadata.name).sorted() == ["smart-building-filter-temperature", "smart-building-get", "smart-building-map"])
        let refused = try deploy(["examples/SmartBuilding/App.swift", "--out", out, "--apply", "--namespace", space, "--autoscale", "1:3",
                                  "--only", "movingAvg"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("--autoscale: 'movingAvg' owns @Placed state (count, average)"))
    }

    @Test func failuresSayWhatToDo() throws {
        let space = namespace("errors")
        defer { cleanup(space) }
        let out = NSTemporaryDirectory() + "dyninka-k8s-errors-\(getpid())"
        let app = "examples/BuildingAlerts/App.swift"
        // A user without rights: the server's 403, and how to grant them.
        let restricted = (admin as NSString).deletingLastPathComponent + "/restricted.kubeconfig"
        let denied = try deploy([app, "--out", out, "--apply", "--namespace", space], kubeconfig: restricted)
        #expect(denied.status == 1)
        #expect(denied.stderr.contains("error: the cluster refused permission: Error from server (Forbidden)"), "\(denied.stderr)")
        #expect(denied.stderr.contains("User \"restricted\" cannot"))
        #expect(denied.stderr.contains("kubectl create rolebinding dyninka-deploy --clusterrole=edit --user=restricted -n \(space)"))
        #expect(denied.stderr.contains("Nothing was applied."))
        // With the role the message names, the same user deploys.
        let kubectl = try kubectl()
        try kubectl.run(["create", "namespace", space])
        try kubectl.run(["create", "rolebinding", "dyninka-deploy", "--clusterrole=edit", "--user=restricted", "-n", space])
        let granted = try deploy([app, "--out", out, "--apply", "--namespace", space], kubeconfig: restricted)
        #expect(granted.status == 0, "\(granted.stderr)")
        #expect(try cluster(space).deployments(app: "building-alerts").count == 4)

        // No server.
        let text = try String(contentsOfFile: admin, encoding: .utf8)
        let port = try #require(text.range(of: #"127\.0\.0\.1:\d+"#, options: .regularExpression))
        let nowhere = out + "-nowhere.kubeconfig"
        try text.replacingCharacters(in: port, with: "127.0.0.1:9").write(toFile: nowhere, atomically: true, encoding: .utf8)
        let unreachable = try deploy([app, "--out", out, "--apply", "--namespace", space], kubeconfig: nowhere)
        #expect(unreachable.status == 1)
        #expect(unreachable.stderr.contains("error: no Kubernetes API server answers: the API server of context 'dyninka-k8s' (https://127.0.0.1:9) does not answer"))
        #expect(unreachable.stderr.contains("apply them later with:"))

        // An object the server refuses: its message, with the object's name; nothing applied.
        let other = namespace("refused")
        defer { cleanup(other) }
        let refused = try deploy([app, "--out", out, "--apply", "--namespace", other, "--env", "1BAD=x"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("the API server refused the app's objects; nothing was applied"))
        #expect(refused.stderr.contains("Deployment.apps \"building-alerts-weather\" is invalid"))
        #expect(try cluster(other).deployments(app: "building-alerts").isEmpty)

        // A rollout that cannot finish: the Deployment, and the scheduler's reason.
        let file = try copy("Tests/Fixtures/Apps/Placement.swift", tag: "stuck")
        try edit(file, "@Service(node: \"edge-2\")", "@Service(node: \"edge-9\")")
        let stuck = try deploy([file, "--out", out + "-stuck", "--apply", "--namespace", other, "--timeout", "6"])
        #expect(stuck.status == 1)
        #expect(stuck.stderr.contains("warning: 'capture' asks for node edge-9, and no node fits"), "\(stuck.stderr)")
        #expect(stuck.stderr.contains("error: the rollout did not finish within 6 s"), "\(stuck.stderr)")
        #expect(stuck.stderr.contains("deployment placement-capture is not available: 0/1 updated") || stuck.stderr.contains("deployment placement-capture is not available: 1/1 updated, 0/1 available"))
        #expect(stuck.stderr.contains("didn't match Pod's node affinity/selector"), "\(stuck.stderr)")
        #expect(!stuck.stderr.contains("deployment placement-detect is not available"))
    }
}
