import DyninkaSystem
import DyninkaCompiler
import Foundation

/// One Kubernetes cluster and namespace as `dyninka deploy` talks to it, through kubectl: find
/// it, create the namespace, read what is deployed, dry-run and apply, wait for the rollout and
/// explain a stuck one, remove an app.
package struct KubernetesCluster: Sendable {
    package let kubectl: Kubectl
    /// The kubeconfig context in use.
    package let context: String
    /// The API server's URL, from the kubeconfig.
    package let server: String
    /// The API server's version (`/version`'s gitVersion).
    package let version: String
    /// Where the app's objects go.
    package let namespace: String

    /// The labels that select an app's objects; the Deployment, Service and HPA of each
    /// service, and its pods, carry them.
    package static func selector(app: String) -> String {
        "app.kubernetes.io/part-of=\(app),app.kubernetes.io/managed-by=dyninka"
    }

    /// Resolves the context and namespace and checks that the API server answers (discovery,
    /// which any authenticated user may read). `namespace` nil: the context's, else `default`.
    package static func connect(_ kubectl: Kubectl, namespace: String?) throws(KubectlFailure) -> KubernetesCluster {
        let context: String
        do { context = try kubectl.run(["config", "current-context"]).trimmingCharacters(in: .whitespacesAndNewlines) } catch {
            throw KubectlFailure(kind: .unreachable, arguments: error.arguments,
                                 message: "kubectl knows no cluster (no current context in its kubeconfig): \(error.message)")
        }
        let server = (try? kubectl.run(["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"])) ?? "?"
        let contextNamespace = (try? kubectl.run(["config", "view", "--minify", "-o", "jsonpath={.contexts[0].context.namespace}"]))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        struct Version: Decodable { var gitVersion: String }
        let raw: String
        do { raw = try kubectl.run(["get", "--raw", "/version", "--request-timeout=10s"]) } catch {
            var failure = error
            if failure.kind == .unreachable || failure.kind == .failed {
                failure.kind = .unreachable
                failure.message = "the API server of context '\(context)' (\(server)) does not answer: \(failure.message)"
            }
            throw failure
        }
        let version = (try? JSONDecoder().decode(Version.self, from: Data(raw.utf8)))?.gitVersion ?? "unknown version"
        let chosen = namespace ?? (contextNamespace?.isEmpty == false ? contextNamespace! : "default")
        return KubernetesCluster(kubectl: kubectl, context: context, server: server, version: version, namespace: chosen)
    }

    /// Where this is, for messages: `context 'c', namespace 'n' (https://...)`.
    package var place: String { "context '\(context)', namespace '\(namespace)' (\(server))" }

    /// Creates the namespace if it is missing, labelled as made for `app` (so that a delete may
    /// remove it again). Returns true when it was created.
    @discardableResult
    package func ensureNamespace(app: String) throws(KubectlFailure) -> Bool {
        let found = try kubectl.call(["get", "namespace", namespace, "-o", "name"])
        if found.status == 0 { return false }
        let kind = KubectlFailure.classify(found.stderr)
        // Namespaces are cluster-wide: a user with rights only inside one cannot read it. Go on;
        // a missing namespace then shows in the dry run.
        if kind == .forbidden { return false }
        guard kind == .notFound else {
            throw KubectlFailure(kind: kind, arguments: ["get", "namespace", namespace], message: found.stderr.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let manifest = Doc.map([
            ("apiVersion", .string("v1")),
            ("kind", .string("Namespace")),
            ("metadata", .map([
                ("name", .string(namespace)),
                ("labels", .map([("app.kubernetes.io/managed-by", .string("dyninka")), (Self.createdForLabel, .string(app))])),
            ])),
        ]).yaml
        try kubectl.run(["create", "-f", "-"], input: manifest)
        return true
    }

    /// Creates the Secret of `file` (the app key) unless one of its name is there: an existing key
    /// is never replaced (hosts of both keys would refuse each other's hops). Returns true when
    /// it was created.
    @discardableResult
    package func ensureSecret(_ name: String, file: String) throws(KubectlFailure) -> Bool {
        let found = try kubectl.call(["get", "secret", name, "-n", namespace, "-o", "name"])
        if found.status == 0 { return false }
        let kind = KubectlFailure.classify(found.stderr)
        guard kind == .notFound else {
            throw KubectlFailure(kind: kind, arguments: ["get", "secret", name], message: found.stderr.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        try kubectl.run(["create", "-n", namespace, "-f", file])
        return true
    }

    /// The label on a namespace that a deploy created for an app.
    package static let createdForLabel = "dyninka.io/created-for"

    /// The app's Deployments, by the service they run.
    package func deployments(app: String) throws(KubectlFailure) -> [String: Kube.Deployment] {
        let list = try kubectl.json(Kube.List<Kube.Deployment>.self, ["get", "deployments", "-n", namespace, "-l", Self.selector(app: app)])
        var byService: [String: Kube.Deployment] = [:]
        for deployment in list.items {
            // A fused unit's Deployment serves several services ("a,b,c"): it is each one's.
            for service in deployment.service?.split(separator: ",").map(String.init) ?? [] { byService[service] = deployment }
        }
        return byService
    }

    /// The cluster's nodes with their labels, for checking placement before applying; nil when
    /// the user may not list nodes (they are cluster-wide).
    package func nodes() -> [PlacementNode]? {
        struct Node: Decodable, Sendable { var metadata: Kube.Metadata }
        guard let list = try? kubectl.json(Kube.List<Node>.self, ["get", "nodes"]) else { return nil }
        return list.items.map { PlacementNode(name: $0.metadata.labels?["kubernetes.io/hostname"] ?? $0.metadata.name, labels: $0.metadata.labels ?? [:]) }
    }

    /// The app's pods.
    package func pods(app: String) throws(KubectlFailure) -> [Kube.Pod] {
        try kubectl.json(Kube.List<Kube.Pod>.self, ["get", "pods", "-n", namespace, "-l", Self.selector(app: app)]).items
    }

    /// `kubectl apply` of the files: server-side apply as field manager `dyninka`, with the
    /// server's strict field validation (an unknown or duplicate field is an error, not dropped).
    /// `dryRun`: the server checks and defaults everything and stores nothing. Returns
    /// kubectl's lines (`deployment.apps/x configured`).
    package func apply(files: [String], dryRun: Bool) throws(KubectlFailure) -> [String] {
        var arguments = ["apply", "-n", namespace, "--server-side", "--field-manager=dyninka", "--force-conflicts", "--validate=strict"]
        if dryRun { arguments.append("--dry-run=server") }
        for file in files { arguments += ["-f", file] }
        return try kubectl.run(arguments).split(separator: "\n").map(String.init)
    }

    /// A Deployment that did not become available in time, and why.
    package struct Stuck: Sendable {
        package var deployment: String
        package var progress: String
        /// Conditions, pod states and events, one finding a line.
        package var reasons: [String]
    }

    /// Why a rollout did not finish.
    package struct RolloutFailure: Error, CustomStringConvertible, Sendable {
        package var stuck: [Stuck]
        package var seconds: Int
        package var gaveUp: Bool

        package var description: String {
            var lines = [gaveUp
                ? "the rollout stopped making progress (the Deployment controller gave up)"
                : "the rollout did not finish within \(seconds) s"]
            for item in stuck {
                lines.append("  deployment \(item.deployment) is not available: \(item.progress)")
                lines += item.reasons.map { "    \($0)" }
            }
            return lines.joined(separator: "\n")
        }
    }

    /// Waits until every named Deployment has rolled out, calling `progress` with a line per
    /// Deployment whenever its state changes and every 10 s while nothing changes. Throws a
    /// `RolloutFailure` naming the Deployments that are not available and why (their
    /// conditions, their pods' conditions, the pods' recent warning events).
    package func waitForRollout(app: String, services: [String], timeout: Int,
                               progress: (String) -> Void) throws -> [String: Kube.Deployment] {
        let start = Date()
        var shown: [String: String] = [:]
        var lastLine = Date()
        while true {
            let all = try deployments(app: app)
            var pending: [String] = []
            for service in services {
                guard let deployment = all[service] else { pending.append(service); continue }
                let line = "\(deployment.metadata.name): \(deployment.progress)" + (deployment.rolledOut ? " (revision \(deployment.revision), rolled out)" : "")
                if shown[service] != line {
                    shown[service] = line
                    progress(line)
                    lastLine = Date()
                }
                if !deployment.rolledOut { pending.append(service) }
                if let stalled = deployment.stalled {
                    throw RolloutFailure(stuck: try explain(app: app, services: [service], all: all), seconds: Int(Date().timeIntervalSince(start)),
                                         gaveUp: true).withReason(stalled)
                }
            }
            if pending.isEmpty { return all }
            let waited = Date().timeIntervalSince(start)
            if waited >= Double(timeout) {
                throw RolloutFailure(stuck: try explain(app: app, services: pending, all: all), seconds: timeout, gaveUp: false)
            }
            if Date().timeIntervalSince(lastLine) >= 10 {
                progress("still waiting for \(pending.count) deployment\(pending.count == 1 ? "" : "s") (\(Int(waited)) s of \(timeout) s): \(pending.joined(separator: ", "))")
                lastLine = Date()
            }
            Thread.sleep(forTimeInterval: 0.5)
        }
    }

    /// The findings for Deployments that are not available.
    func explain(app: String, services: [String], all: [String: Kube.Deployment]) throws(KubectlFailure) -> [Stuck] {
        let pods = try pods(app: app)
        let events = (try? kubectl.json(Kube.List<Kube.Event>.self, ["get", "events", "-n", namespace]).items) ?? []
        return services.map { service in
            guard let deployment = all[service] else {
                return Stuck(deployment: service, progress: "missing", reasons: ["the Deployment does not exist (deleted while waiting?)"])
            }
            var reasons: [String] = []
            for condition in deployment.status?.conditions ?? [] where condition.status != "True" || condition.reason == "ProgressDeadlineExceeded" {
                reasons.append("condition \(condition.type)=\(condition.status)\(condition.reason.map { " (\($0))" } ?? ""): \(condition.message ?? "")")
            }
            let instance = deployment.metadata.labels?["app.kubernetes.io/instance"]
            for pod in pods where pod.metadata.labels?["app.kubernetes.io/instance"] == instance && !pod.ready {
                let name = pod.metadata.name
                var state = "pod \(name): \(pod.status?.phase ?? "no phase")"
                if let node = pod.spec?.nodeName { state += " on \(node)" } else { state += ", not scheduled" }
                reasons.append(state)
                for condition in pod.status?.conditions ?? [] where condition.status != "True" {
                    reasons.append("  \(condition.type)=\(condition.status)\(condition.reason.map { " (\($0))" } ?? "")\(condition.message.map { ": \($0)" } ?? "")")
                }
                var seen = Set<String>()
                for event in events.reversed() where event.involvedObject.name == name && event.type == "Warning" {
                    let line = "  event \(event.reason ?? "?"): \(event.message ?? "")"
                    if seen.insert(line).inserted, seen.count <= 3 { reasons.append(line) }
                }
            }
            if reasons.isEmpty { reasons.append("no condition or event says why yet (the pods may still be starting)") }
            return Stuck(deployment: deployment.metadata.name, progress: deployment.progress, reasons: reasons)
        }
    }

    /// Deletes the app's Deployments, Services, HPAs, NetworkPolicies, PodDisruptionBudgets and key Secret (by label, so only what a deploy of
    /// this app created), waits up to `timeout` seconds for its pods to go, and removes the
    /// namespace too when a deploy created it for this app and nothing else is left in it.
    /// Returns kubectl's lines.
    package func delete(app: String, timeout: Int, progress: (String) -> Void) throws(KubectlFailure) -> [String] {
        var lines = try kubectl.run(["delete", "deployments,services,horizontalpodautoscalers,networkpolicies,poddisruptionbudgets,secrets", "-n", namespace, "-l", Self.selector(app: app),
                                     "--wait=false"])
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty && !$0.hasPrefix("No resources found") }
        let start = Date()
        var last = -1
        while true {
            let left = try pods(app: app).count
            if left == 0 { break }
            if left != last {
                progress("waiting for \(left) pod\(left == 1 ? "" : "s") to stop")
                last = left
            }
            if Date().timeIntervalSince(start) >= Double(timeout) {
                progress("\(left) pod\(left == 1 ? "" : "s") still stopping after \(timeout) s; Kubernetes finishes this on its own")
                break
            }
            Thread.sleep(forTimeInterval: 0.5)
        }
        if let found = try? kubectl.json(Kube.Namespace.self, ["get", "namespace", namespace]),
           found.metadata.labels?[Self.createdForLabel] == app {
            let rest = try othersInNamespace(app: app)
            if rest.isEmpty {
                try kubectl.run(["delete", "namespace", namespace, "--wait=false"])
                lines.append("namespace/\(namespace) deleted (a deploy of \(app) created it, and nothing else is in it)")
            } else {
                let shown = rest.prefix(8).joined(separator: ", ") + (rest.count > 8 ? ", ..." : "")
                lines.append("namespace/\(namespace) kept: it holds \(rest.count) object\(rest.count == 1 ? "" : "s") a deploy of \(app) did not create (\(shown))")
            }
        }
        return lines
    }

    /// Every object in the namespace that the app's deploys did not make, of every namespaced
    /// kind the server offers (as `kubectl api-resources --namespaced` lists them: PVCs,
    /// Ingresses, Roles, NetworkPolicies, custom resources, ...). Left out: what each namespace
    /// has anyway (its CA bundle, default service account and its token), events, and what the
    /// app's own objects own (labelled as its, or named after it: endpoints, replica sets).
    func othersInNamespace(app: String) throws(KubectlFailure) -> [String] {
        let kinds = try kubectl.run(["api-resources", "--namespaced=true", "--verbs=list", "-o", "name"])
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty && $0 != "events" && $0 != "events.events.k8s.io" }
        guard !kinds.isEmpty else { return [] }
        let objects = try kubectl.json(Kube.List<Kube.Object>.self, ["get", kinds.joined(separator: ","), "-n", namespace, "-o", "json"]).items
        return objects.filter { object in
            let name = object.metadata.name
            let kind = object.kind ?? "?"
            if object.metadata.labels?["app.kubernetes.io/part-of"] == app { return false }
            if kind == "ConfigMap" && name == "kube-root-ca.crt" { return false }
            if kind == "ServiceAccount" && name == "default" { return false }
            if kind == "Secret" && name.hasPrefix("default-token-") { return false }
            if ["Endpoints", "EndpointSlice", "ReplicaSet", "Pod", "ControllerRevision"].contains(kind) && name.hasPrefix(app + "-") { return false }
            return true
        }.map { "\(($0.kind ?? "object").lowercased())/\($0.metadata.name)" }
    }
}

extension KubernetesCluster.RolloutFailure {
    func withReason(_ condition: Kube.Condition) -> Self {
        var copy = self
        if !copy.stuck.isEmpty, let message = condition.message {
            copy.stuck[0].reasons.insert("the controller says: \(message)", at: 0)
        }
        return copy
    }
}
