import DyninkaCompiler
import Foundation

/// `dyninka deploy --apply` on Kubernetes, apart from the CLI (which parses, prints and sets the
/// exit code): the cluster is the record, so only the services whose generated objects differ
/// from the live ones (by spec hash) are checked by a server-side dry run, applied (the app key's
/// Secret first, when the namespace has none), and waited for until rolled out.
package struct KubernetesApply {
    package let cluster: KubernetesCluster
    package let ir: AppIR
    /// What `Deployer.write` wrote: the manifests and their spec hashes.
    package let written: DeploymentResult
    /// The deploy's output folder (the app key's Secret file lies there).
    package let output: String
    /// Only this service, or all.
    package let only: String?
    /// Seconds to wait for the rollout.
    package let timeout: Int

    package init(cluster: KubernetesCluster, ir: AppIR, written: DeploymentResult, output: String, only: String?, timeout: Int) {
        self.cluster = cluster
        self.ir = ir
        self.written = written
        self.output = output
        self.only = only
        self.timeout = timeout
    }

    /// The app's object name prefix (its DNS label).
    package var app: String { ObjectNames.dns(ir.name) }

    /// Applies what changed, telling `note` each step; returns the services it rolled. Throws a
    /// `KubectlFailure` (the cluster refused or could not be reached) or a
    /// `KubernetesCluster.RolloutFailure` (applied, but not available in time).
    package func run(note: (String) -> Void) throws -> [String] {
        if try cluster.ensureNamespace(app: app) { note("created namespace '\(cluster.namespace)'") }
        let live = try cluster.deployments(app: app)
        // What rolls is a unit: a service, or a fused group (its first service names it).
        let onlyUnit = only.map { KubernetesManifests.unit(of: $0, ir, settings: written.settings) }
        let selected = ir.services.map(\.name).filter { written.specHashes[$0] != nil && (onlyUnit == nil || $0 == onlyUnit) }
        let changed = selected.filter { live[$0]?.specHash != written.specHashes[$0] }
        let unchanged = selected.filter { !changed.contains($0) }
        note("changed on the cluster: \(changed.isEmpty ? "none" : changed.joined(separator: ", "))")
        if !unchanged.isEmpty { note("unchanged (not applied, not rolled): \(unchanged.joined(separator: ", "))") }
        guard !changed.isEmpty else { return [] }
        // The placement the file asks for, against the nodes there are (the same rules as on a
        // test bed): a pod no node fits stays Pending.
        if let nodes = cluster.nodes() {
            do {
                try Placement.check(ir.services.filter { changed.contains($0.name) }.map { ($0.name, $0.placement) }, nodes: nodes)
            } catch {
                note("warning: \(error); its pod will stay Pending until such a node joins")
            }
        }
        let files = changed.compactMap { written.manifests[$0] }
        note("checking \(files.count) manifest\(files.count == 1 ? "" : "s") with the server (dry run, strict field validation)")
        _ = try cluster.apply(files: files, dryRun: true)
        // The key before the pods that read it (and only once the server took the objects).
        let secret = KubernetesManifests.keySecretName(try ObjectNames.checked(ir))
        if try cluster.ensureSecret(secret, file: output + "/" + Deployer.keySecretFile) {
            note("created the app key's Secret '\(secret)' (hops between the services are signed with it)")
        }
        for line in try cluster.apply(files: files, dryRun: false) { note("  \(line)") }
        note("waiting for \(changed.count) deployment\(changed.count == 1 ? "" : "s") to roll out (up to \(timeout) s)")
        _ = try cluster.waitForRollout(app: app, services: changed, timeout: timeout) { note("  \($0)") }
        return changed
    }

    /// What the new pods of the rolled units with @Placed state said about the state they took
    /// over (their own log lines: restored N values, or fresh and why).
    package func handOverOutcomes(of units: [String]) -> [String] {
        guard let names = try? ObjectNames.checked(ir) else { return [] }
        var lines: [String] = []
        for unit in units {
            let members = KubernetesManifests.units(ir, settings: written.settings).first { $0.first == unit } ?? [unit]
            guard members.contains(where: { !(ir.service($0)?.placedState.isEmpty ?? true) }) else { continue }
            // The newest pod is the one that took over (the old one may still be draining).
            let newest = (try? cluster.kubectl.run(["get", "pods", "-n", cluster.namespace, "-l", "app.kubernetes.io/instance=\(names[unit])",
                                                    "--sort-by=.metadata.creationTimestamp", "-o", "name"]))?
                .split(separator: "\n").last.map(String.init)
            guard let newest else {
                lines.append("state of \(members.joined(separator: ", ")): no pod found to ask")
                continue
            }
            let logs = (try? cluster.kubectl.run(["logs", "-n", cluster.namespace, newest, "-c", "dyninka-host", "--tail=200"])) ?? ""
            let said = Self.handOverLines(logs)
            if said.isEmpty {
                lines.append("state of \(members.joined(separator: ", ")): the new pod said nothing about it yet (kubectl logs -l app.kubernetes.io/instance=\(names[unit]))")
            }
            for line in said { lines.append("state (\(newest.replacingOccurrences(of: "pod/", with: ""))): \(line)") }
        }
        return lines
    }

    /// The lines of a host's log that say what became of its @Placed state at start: restored
    /// from a predecessor, or fresh and why.
    package static func handOverLines(_ logs: String) -> [String] {
        logs.split(separator: "\n").filter {
            $0.contains("took over the state of") || $0.contains("starts with fresh state") || $0.contains("no other instance at")
        }.map(String.init)
    }

    /// Every Deployment of the app after a deploy, a row each (a header row first): service,
    /// Deployment, revision, ready replicas, nodes, and whether this deploy rolled it.
    package func summary(rolled: [String]) throws(KubectlFailure) -> [[String]] {
        let deployments = try cluster.deployments(app: app)
        let pods = try cluster.pods(app: app)
        var rows = [["SERVICE", "DEPLOYMENT", "REVISION", "READY", "NODES", ""]]
        for service in ir.services {
            guard let deployment = deployments[service.name] else {
                rows.append([service.name, "-", "-", "-", "-", "not deployed"])
                continue
            }
            let instance = deployment.metadata.labels?["app.kubernetes.io/instance"]
            let nodes = Set(pods.filter { $0.ready && $0.metadata.labels?["app.kubernetes.io/instance"] == instance }.compactMap { $0.spec?.nodeName })
            rows.append([service.name, deployment.metadata.name, String(deployment.revision),
                         "\(deployment.status?.availableReplicas ?? 0)/\(deployment.desired)",
                         nodes.isEmpty ? "-" : nodes.sorted().joined(separator: ","), rolled.contains(service.name) ? "rolled now" : ""])
        }
        return rows
    }
}
