import DyninkaCompiler
import DyninkaSettings

/// Settings of a deployment beyond one machine.
package struct DeploySettings: Sendable {
    /// The container image with dyninka-host and the app library.
    package var image: String
    /// Kubernetes namespace (nil: the context's default).
    package var namespace: String?
    /// Port every host listens on inside its container or task.
    package var port = 8080
    /// Generate a HorizontalPodAutoscaler for services without @Placed state: (min, max).
    package var autoscale: (min: Int, max: Int)?
    /// Environment variables for every service (for example SENSOR_URL).
    package var environment: [(String, String)] = []
    /// Where the app library lies inside the image.
    package var libraryPath: String
    /// The memory limit of every pod, in MiB; the host's own bounds are derived from it.
    package var memoryLimitMiB = 256
    /// Also write a NetworkPolicy per service: only its callers in main's dataflow (and, for the
    /// entry, any client) may reach it.
    package var networkPolicy = false
    /// Seconds a pod stays bound to a node that stopped answering (or is not ready) before the
    /// cluster evicts it and its Deployment starts a replacement elsewhere; Kubernetes' own
    /// default is 300 s, long for a fog whose nodes fail.
    package var nodeLossSeconds = 20
    /// Where services with @Placed state keep a checkpoint of it (`redis://HOST:PORT[/PREFIX]`),
    /// and how often (`--checkpoint-interval`, ms; 0: before each answer). Nil: none.
    package var checkpoint: String?
    package var checkpointInterval = 0
    /// Programs that run beside services, in their pods (`dyninka.json`'s sidecars).
    package var sidecars: [DeploySidecar] = []
    /// Which services share a pod (fusion): with `auto`, the services that must share a node
    /// (`near:`, one `node:`) are one Deployment whose host serves them all, with a Service per
    /// service name, so that callers do not change.
    package var fusion: Fusion = .none

    package init(image: String, libraryPath: String) {
        self.image = image
        self.libraryPath = libraryPath
    }
}

/// A sidecar on a cluster: a container in the pod of the service it is near; that service's host
/// reaches it on the pod's loopback, through the URL in `env`.
package struct DeploySidecar: Sendable {
    package var name: String
    /// Its image (built offline beside the app's, or the one `dyninka.json` names).
    package var image: String
    /// The program and its arguments; `{host}` and `{port}` are filled in.
    package var command: [String]
    /// The service whose pod it joins.
    package var service: String
    /// Its port in the pod (the service reaches it on 127.0.0.1, the kubelet's probe on the pod's IP).
    package var port: Int
    /// Its readiness path: the pod takes traffic only when the sidecar answers there too.
    package var health: String?
    /// The variable that gives the service the sidecar's URL.
    package var env: String?

    package init(name: String, image: String, command: [String], service: String, port: Int, health: String?, env: String?) {
        (self.name, self.image, self.command, self.service, self.port, self.health, self.env) = (name, image, command, service, port, health, env)
    }

    /// Its URL from inside the pod.
    package var url: String { "http://127.0.0.1:\(port)" }

    /// The container.
    func container() -> Doc {
        // All of the pod's addresses: the kubelet probes it at the pod's IP, not its loopback.
        let words = command.map { $0.replacingOccurrences(of: "{host}", with: "0.0.0.0").replacingOccurrences(of: "{port}", with: String(port)) }
        var pairs: [(String, Doc)] = [
            ("name", .string(ObjectNames.dns(name))), ("image", .string(image)),
            ("command", .list(words.map(Doc.string))),
        ]
        if let health {
            pairs.append(("readinessProbe", .map([("httpGet", .map([("path", .string(health)), ("port", .int(port))])),
                                                  ("periodSeconds", .int(2)), ("failureThreshold", .int(2))])))
        }
        pairs += [
            ("resources", .map([("requests", .map([("cpu", .string("50m")), ("memory", .string("32Mi"))])),
                                ("limits", .map([("cpu", .string("500m")), ("memory", .string("128Mi"))]))])),
            ("securityContext", KubernetesManifests.containerSecurity),
            ("volumeMounts", .list([.map([("name", .string("tmp")), ("mountPath", .string("/tmp"))])])),
        ]
        return .map(pairs)
    }
}

/// Why a deployment cannot be generated.
package struct DeployFailure: Error, CustomStringConvertible, Sendable {
    package var description: String
    package init(_ description: String) { self.description = description }
}

extension ObjectNames {
    /// The app's names, or a deploy failure naming the services that collide.
    static func checked(_ ir: AppIR) throws(DeployFailure) -> ObjectNames {
        do { return try ObjectNames(ir) } catch { throw DeployFailure(error.description) }
    }
}

/// Kubernetes objects for an app: per service a Deployment and a Service (and optionally an
/// HorizontalPodAutoscaler), generated from the IR.
package enum KubernetesManifests {
    /// The annotation that carries a service's code hash: a changed hash rolls that service only.
    package static let hashAnnotation = "dyninka.io/code-hash"
    /// The annotation on a Deployment that carries the hash of everything generated for its
    /// service (Deployment, Service, HPA): a deploy compares it with the live one to find what
    /// changed on the server.
    package static let specHashAnnotation = "dyninka.io/spec-hash"
    /// The pod template annotation with the service's default route (what follows it in main's
    /// chain): an edit of main that changes it rolls the service.
    package static let routeAnnotation = "dyninka.io/route"

    /// The Secret holding the app key (`key`): every host reads it as DYNINKA_APP_KEY, so that
    /// hops inside the app are signed and clients may run only main's chain at the entry.
    package static func keySecretName(_ names: ObjectNames) -> String { "\(names.app)-app-key" }

    /// The user the hosts run as (the image's USER too): not root.
    static let user = 65532

    /// Nothing a host (or a sidecar) needs: root, privileges, capabilities, a writable image.
    static let containerSecurity: Doc = .map([
        ("runAsNonRoot", .bool(true)), ("runAsUser", .int(user)), ("runAsGroup", .int(user)),
        ("allowPrivilegeEscalation", .bool(false)), ("readOnlyRootFilesystem", .bool(true)),
        ("capabilities", .map([("drop", .list([.string("ALL")]))])),
    ])

    /// The host's --max-buffered-bytes for a pod limited to `limitMiB`: half of it, so that the
    /// host refuses (503) long before the kernel kills the pod (the rest is the runtime, the app
    /// library, the loop's read blocks and the app's own memory).
    package static func maxBufferedBytes(limitMiB: Int) -> Int { limitMiB * 1024 * 1024 / 2 }

    /// The Secret with a new app key (32 random bytes as hex), labelled as the app's. It names no
    /// namespace: the one file serves every namespace the app is deployed to (`kubectl create -n`).
    package static func keySecret(_ ir: AppIR, key: String) throws(DeployFailure) -> String {
        let names = try ObjectNames.checked(ir)
        var metadata: [(String, Doc)] = [("name", .string(keySecretName(names)))]
        metadata.append(("labels", .map([("app.kubernetes.io/part-of", .string(names.app)), ("app.kubernetes.io/managed-by", .string("dyninka"))])))
        return Doc.map([
            ("apiVersion", .string("v1")), ("kind", .string("Secret")), ("metadata", .map(metadata)),
            ("type", .string("Opaque")), ("stringData", .map([("key", .string(key))])),
        ]).yaml
    }

    /// The units a deploy applies and rolls, each keyed by its first service: one service, or a
    /// fused group (`settings.fusion`) whose Deployment serves all of its services.
    package static func units(_ ir: AppIR, settings: DeploySettings) -> [[String]] {
        settings.fusion.deployGroups(ir.services, entry: ir.dataflow.entry)
    }

    /// The unit (its first service) that deploys `service`.
    package static func unit(of service: String, _ ir: AppIR, settings: DeploySettings) -> String {
        units(ir, settings: settings).first { $0.contains(service) }?[0] ?? service
    }

    /// One YAML document list per unit (a service, or a fused group), keyed by the unit's first
    /// service, with its spec hash.
    package static func generate(_ ir: AppIR, settings: DeploySettings) throws(DeployFailure) -> [(service: String, yaml: String, specHash: String)] {
        let names = try ObjectNames.checked(ir)
        return units(ir, settings: settings).map { unit in
            let members = unit.compactMap { ir.service($0) }
            let unhashed = objects(members, ir: ir, names: names, settings: settings, specHash: nil)
            let specHash = FNV.hex(unhashed.map(\.yaml).joined(separator: "---\n"))
            let documents = objects(members, ir: ir, names: names, settings: settings, specHash: specHash)
            return (unit[0], documents.map(\.yaml).joined(separator: "---\n"), specHash)
        }
    }

    /// The headless Service through which a unit's new pod finds the old one for the hand-over
    /// of its @Placed state (a DNS label: at most 63 characters).
    static func handOverServiceName(_ name: String) -> String {
        var base = Substring(name.prefix(63 - 9))
        while base.hasSuffix("-") { base = base.dropLast() }
        return base + "-handover"
    }

    /// The annotation on a stateful unit's PodDisruptionBudget that says who moves its pod when a
    /// node is drained.
    package static let guardAnnotation = "dyninka.io/drain"

    /// Whether `--autoscale` may scale this service out: not when it owns @Placed state, which
    /// lives in one process.
    package static func scalable(_ service: ServiceIR) -> Bool { service.placedState.isEmpty }

    static func labels(_ service: ServiceIR, names: ObjectNames) -> Doc {
        .map([
            ("app.kubernetes.io/name", .string(ObjectNames.dns(service.name))),
            ("app.kubernetes.io/instance", .string(names[service.name])),
            ("app.kubernetes.io/component", .string("service")),
            ("app.kubernetes.io/part-of", .string(names.app)),
            ("app.kubernetes.io/managed-by", .string("dyninka")),
        ])
    }

    static func metadata(_ name: String, _ service: ServiceIR, names: ObjectNames, settings: DeploySettings,
                         annotations: [(String, Doc)] = []) -> Doc {
        var pairs: [(String, Doc)] = [("name", .string(name))]
        if let namespace = settings.namespace { pairs.append(("namespace", .string(namespace))) }
        pairs.append(("labels", labels(service, names: names)))
        if !annotations.isEmpty { pairs.append(("annotations", .map(annotations))) }
        return .map(pairs)
    }

    /// The objects of one unit: `members` (one service, or a fused group led by the first) run in
    /// one Deployment named after the first; each member gets its own Service selecting its pods.
    static func objects(_ members: [ServiceIR], ir: AppIR, names: ObjectNames, settings: DeploySettings, specHash: String?) -> [Doc] {
        let service = members[0]
        let fused = members.count > 1
        let memberNames = members.map(\.name)
        let autoscaled = settings.autoscale != nil && members.allSatisfy(scalable)
        let name = names[service.name]
        let selector: Doc = .map([("app.kubernetes.io/instance", .string(name))])
        var host = HostSettings()
        host.app = settings.libraryPath
        host.service = memberNames.joined(separator: ",")
        host.host = "0.0.0.0"
        host.port = settings.port
        // Peers by DNS: each service's Service is named APP-SERVICE, in the same namespace.
        host.peerTemplate = "\(names.app)-{name}:\(settings.port)"
        // Keep accepting while the endpoint is removed, then finish in-flight requests.
        host.drainDelay = 5_000
        host.drainTimeout = 30_000
        // The bound on held bytes acts before the pod's memory limit does.
        host.maxBufferedBytes = maxBufferedBytes(limitMiB: settings.memoryLimitMiB)
        // @Placed state goes from the old pod to the new one over the network: the new pod asks
        // the pods behind the unit's headless hand-over Service (which lists not-ready and
        // terminating pods too) on the control port, signed with the app key.
        let stateful = members.contains { !$0.placedState.isEmpty }
        let controlPort = settings.port + 1
        var settingsShown: [HostSetting] = [.peerTemplate, .drainDelay, .drainTimeout, .maxBufferedBytes]
        if stateful {
            host.controlPort = controlPort
            host.handoverFrom = "\(handOverServiceName(name)):\(controlPort)"
            settingsShown += [.controlPort, .handoverFrom]
            // What survives a lost node: the state in a store of the user's.
            if let checkpoint = settings.checkpoint {
                host.checkpoint = checkpoint
                host.checkpointInterval = settings.checkpointInterval
                settingsShown += [.checkpoint, .checkpointInterval]
            }
        }
        var env: [Doc] = host.environment(settingsShown).map {
            .map([("name", .string($0.name)), ("value", .string($0.value))])
        }
        if stateful {
            env.append(.map([("name", .string(HostSetting.podIP.variable!)),
                             ("valueFrom", .map([("fieldRef", .map([("fieldPath", .string("status.podIP"))]))]))]))
        }
        // Hops of the app sign their routes with the app key; clients run main's chain only.
        env.append(.map([("name", .string(HostSetting.appKey.variable!)), ("valueFrom", .map([("secretKeyRef", .map([
            ("name", .string(keySecretName(names))), ("key", .string("key")),
        ]))]))]))
        for (key, value) in settings.environment { env.append(.map([("name", .string(key)), ("value", .string(value))])) }
        let sidecars = settings.sidecars.filter { memberNames.contains($0.service) }
        for sidecar in sidecars {
            if let variable = sidecar.env { env.append(.map([("name", .string(variable)), ("value", .string(sidecar.url))])) }
        }
        let container: Doc = .map([
            ("name", .string("dyninka-host")),
            ("image", .string(settings.image)),
            ("args", .list((["serve"] + host.arguments(only: [.app, .service, .host, .port])).map(Doc.string))),
            ("env", .list(env)),
            ("ports", .list([.map([("name", .string("http")), ("containerPort", .int(settings.port)), ("protocol", .string("TCP"))])]
                            + (stateful ? [.map([("name", .string("control")), ("containerPort", .int(controlPort)), ("protocol", .string("TCP"))])] : []))),
            ("readinessProbe", .map([("httpGet", .map([("path", .string("/readyz")), ("port", .string("http"))])),
                                     ("periodSeconds", .int(2)), ("failureThreshold", .int(2))])),
            ("livenessProbe", .map([("httpGet", .map([("path", .string("/healthz")), ("port", .string("http"))])),
                                    ("initialDelaySeconds", .int(2)), ("periodSeconds", .int(10)), ("failureThreshold", .int(3))])),
            ("resources", .map([("requests", .map([("cpu", .string("100m")), ("memory", .string("64Mi"))])),
                                ("limits", .map([("cpu", .string("1")), ("memory", .string("\(settings.memoryLimitMiB)Mi"))]))])),
            ("securityContext", containerSecurity),
            ("volumeMounts", .list([.map([("name", .string("tmp")), ("mountPath", .string("/tmp"))])])),
        ])
        var podSpec: [(String, Doc)] = [
            // Drain delay (5 s) + drain timeout (30 s) + margin.
            ("terminationGracePeriodSeconds", .int(40)),
            // A host never talks to the API server.
            ("automountServiceAccountToken", .bool(false)),
            ("securityContext", .map([("runAsNonRoot", .bool(true)), ("seccompProfile", .map([("type", .string("RuntimeDefault"))]))])),
            ("volumes", .list([.map([("name", .string("tmp")), ("emptyDir", .map([("sizeLimit", .string("16Mi"))]))])])),
            // How long a lost node keeps its pods: after this the pod is evicted and replaced on
            // another node that its placement allows.
            ("tolerations", .list(["node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"].map { key in
                .map([("key", .string(key)), ("operator", .string("Exists")), ("effect", .string("NoExecute")),
                      ("tolerationSeconds", .int(settings.nodeLossSeconds))])
            })),
        ]
        if let placement = service.placement {
            var nodeSelector: [(String, Doc)] = []
            if let node = placement.node { nodeSelector.append(("kubernetes.io/hostname", .string(node))) }
            if let label = placement.label, let eq = label.firstIndex(of: "=") {
                nodeSelector.append((String(label[..<eq]), .string(String(label[label.index(after: eq)...]))))
            }
            if !nodeSelector.isEmpty { podSpec.append(("nodeSelector", .map(nodeSelector))) }
            // Near a service of the same group: the group is one pod, nothing to ask.
            if let near = placement.near, !memberNames.contains(near) {
                podSpec.append(("affinity", .map([("podAffinity", .map([("requiredDuringSchedulingIgnoredDuringExecution", .list([
                    .map([("labelSelector", .map([("matchLabels", .map([("app.kubernetes.io/instance", .string(names[near]))]))])),
                          ("topologyKey", .string("kubernetes.io/hostname"))]),
                ]))]))])))
            }
        }
        podSpec.append(("containers", .list([container] + sidecars.map { $0.container() })))
        // An autoscaled Deployment leaves its replica count to the HPA: applying a count would
        // undo the HPA's scaling at every deploy.
        var deploymentSpec: [(String, Doc)] = autoscaled ? [] : [("replicas", .int(1))]
        deploymentSpec += [
                ("selector", .map([("matchLabels", selector)])),
                // The new pod starts next to the old one. With @Placed state, the new pod holds
                // its requests and readiness until the old one has handed the state over (and
                // relays what still reaches it), so the two never count on their own.
                ("strategy", .map([("type", .string("RollingUpdate")), ("rollingUpdate", .map([("maxUnavailable", .int(0)), ("maxSurge", .int(1))]))])),
                ("template", .map([
                    ("metadata", .map([
                        ("labels", labels(service, names: names)),
                        ("annotations", .map([(hashAnnotation, .string(fused ? FNV.hex(members.map(\.codeHash).joined(separator: ",")) : service.codeHash)),
                                              ("dyninka.io/service", .string(memberNames.joined(separator: ","))),
                                              (routeAnnotation, .string(fused ? members.map { "\($0.name): \($0.defaultRoute)" }.joined(separator: "; ") : service.defaultRoute))])),
                    ])),
                    ("spec", .map(podSpec)),
                ])),
        ]
        let deployment: Doc = .map([
            ("apiVersion", .string("apps/v1")),
            ("kind", .string("Deployment")),
            ("metadata", metadata(name, service, names: names, settings: settings,
                                  annotations: specHash.map { [(specHashAnnotation, .string($0))] } ?? [])),
            ("spec", .map(deploymentSpec)),
        ])
        // A Service per member, each selecting the unit's pods: callers keep calling APP-NAME.
        let kubeServices: [Doc] = members.map { member in
            .map([
                ("apiVersion", .string("v1")),
                ("kind", .string("Service")),
                ("metadata", metadata(names[member.name], member, names: names, settings: settings)),
                ("spec", .map([
                    ("selector", selector),
                    ("ports", .list([.map([("name", .string("http")), ("port", .int(settings.port)), ("targetPort", .string("http")),
                                           ("protocol", .string("TCP"))])])),
                ])),
            ])
        }
        var documents = [deployment] + kubeServices
        if stateful {
            // Headless, and listing pods that are not ready (the new one holding, the old one
            // terminating): the new pod finds its predecessor by this name.
            documents.append(.map([
                ("apiVersion", .string("v1")),
                ("kind", .string("Service")),
                ("metadata", metadata(handOverServiceName(name), service, names: names, settings: settings)),
                ("spec", .map([
                    ("clusterIP", .string("None")),
                    ("publishNotReadyAddresses", .bool(true)),
                    ("selector", selector),
                    ("ports", .list([.map([("name", .string("control")), ("port", .int(controlPort)), ("targetPort", .string("control")),
                                           ("protocol", .string("TCP"))])])),
                ])),
            ]))
        }
        // No eviction may take a pod: with one replica, an evicted pod leaves its callers without
        // an endpoint until the replacement is ready (and a stateful one's state waiting). A drain
        // waits until `dyninka guard` (or a deploy) replaces the pod by a rollout, in which the new
        // pod is ready (and has taken the state over) before the old one goes. A rollout deletes
        // the old pod itself (not an eviction), and a lost node's pods are deleted by the node
        // controller: neither waits for this budget.
        documents.append(.map([
            ("apiVersion", .string("policy/v1")),
            ("kind", .string("PodDisruptionBudget")),
            ("metadata", metadata(name, service, names: names, settings: settings, annotations: [(guardAnnotation, .string(
                stateful ? "dyninka guard moves this pod off a cordoned node by a rollout that hands its @Placed state over"
                         : "dyninka guard moves this pod off a cordoned node by a rollout (the new pod ready first)"))])),
            ("spec", .map([
                ("maxUnavailable", .int(0)),
                ("selector", .map([("matchLabels", selector)])),
            ])),
        ]))
        if settings.networkPolicy { documents.append(networkPolicy(members, ir: ir, names: names, settings: settings)) }
        // State placed on a service lives in one process: only stateless services scale out.
        if let autoscale = settings.autoscale, autoscaled {
            documents.append(.map([
                ("apiVersion", .string("autoscaling/v2")),
                ("kind", .string("HorizontalPodAutoscaler")),
                ("metadata", metadata(name, service, names: names, settings: settings)),
                ("spec", .map([
                    ("scaleTargetRef", .map([("apiVersion", .string("apps/v1")), ("kind", .string("Deployment")), ("name", .string(name))])),
                    ("minReplicas", .int(autoscale.min)),
                    ("maxReplicas", .int(autoscale.max)),
                    ("metrics", .list([.map([("type", .string("Resource")), ("resource", .map([
                        ("name", .string("cpu")),
                        ("target", .map([("type", .string("Utilization")), ("averageUtilization", .int(70))])),
                    ]))])])),
                ])),
            ]))
        }
        return documents
    }

    /// Who may reach a unit's pods: the services that call its members in main's dataflow (the
    /// step before, or the step whose argument it computes; by their unit's pods, and not the
    /// members themselves, which call each other in process), and any client when it holds the
    /// entry.
    static func networkPolicy(_ members: [ServiceIR], ir: AppIR, names: ObjectNames, settings: DeploySettings) -> Doc {
        let service = members[0]
        let memberNames = Set(members.map(\.name))
        let graph = DataflowGraph.callers(ir)
        let callers = Set(members.flatMap { graph[$0.name] ?? [] }.filter { ir.service($0) != nil && !memberNames.contains($0) })
            .map { unit(of: $0, ir, settings: settings) }
        var from: [Doc] = Set(callers).sorted().map { .map([("podSelector", .map([("matchLabels", .map([("app.kubernetes.io/instance", .string(names[$0]))]))]))]) }
        let port: Doc = .list([.map([("protocol", .string("TCP")), ("port", .int(settings.port))])])
        var rules: [Doc] = []
        if memberNames.contains(ir.dataflow.entry) {
            // Clients come from anywhere the Service is reachable.
            rules.append(.map([("ports", port)]))
            from = []
        }
        if !from.isEmpty { rules.append(.map([("from", .list(from)), ("ports", port)])) }
        if members.contains(where: { !$0.placedState.isEmpty }) {
            // The unit's next pod asks this one for its @Placed state on the control port.
            let own: Doc = .map([("podSelector", .map([("matchLabels", .map([("app.kubernetes.io/instance", .string(names[service.name]))]))]))])
            rules.append(.map([("from", .list([own])), ("ports", .list([.map([("protocol", .string("TCP")), ("port", .int(settings.port + 1))])]))]))
        }
        return .map([
            ("apiVersion", .string("networking.k8s.io/v1")),
            ("kind", .string("NetworkPolicy")),
            ("metadata", metadata(names[service.name], service, names: names, settings: settings)),
            ("spec", .map([
                ("podSelector", .map([("matchLabels", .map([("app.kubernetes.io/instance", .string(names[service.name]))]))])),
                ("policyTypes", .list([.string("Ingress")])),
                ("ingress", .list(rules)),
            ])),
        ])
    }
}
