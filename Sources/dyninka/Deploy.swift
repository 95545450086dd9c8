import ArgumentParser
import DyninkaCompiler
import DyninkaDeploy
import DyninkaRunner
import DyninkaSystem
import DyninkaTestbed
import DyninkaView
import Foundation

extension DyninkaCommand {
    /// `dyninka deploy FILE`: Kubernetes or Marathon (or this machine), from the same IR.
    struct Deploy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deploy an app to Kubernetes, Marathon or this machine.",
            discussion: """
                With --target auto (the default) the target comes from the environment: in-cluster \
                variables or a kubeconfig context mean Kubernetes, MARATHON_URL means Marathon, \
                otherwise this machine (`dyninka run`). Files go to --out: per service a Deployment \
                and a Service (and with --autoscale an HPA), or a Marathon group, and a Containerfile. \
                Each service carries a hash of its code: the command lists which services changed \
                since the last deployment, and --apply applies only those. On Kubernetes, --apply asks \
                the cluster what runs there (per context and namespace), creates the namespace if \
                needed, has the server check the objects (dry run) before applying them, and waits \
                for the rollout; --delete removes what deploys of the app created.

                Examples:
                  dyninka deploy App.swift --target kubernetes \\
                      --image registry.example/smart-building:1
                  dyninka deploy App.swift --only map --apply
                  dyninka deploy App.swift --apply --namespace fog --autoscale 1:4
                  dyninka deploy App.swift --delete --namespace fog
                """)

        @Argument(help: "The app's Swift file.")
        var file: String
        @Option(help: "auto, local, kubernetes or marathon.")
        var target: String = "auto"
        @Option(help: "Output folder (default: .dyninka/APP/deploy beside the file).")
        var out: String?
        @Option(help: "Container image holding dyninka-host and the app library (default: dyninka/APP:latest).")
        var image: String?
        @Option(help: "Kubernetes namespace for the objects.")
        var namespace: String?
        @Option(help: "Autoscale stateless services between MIN and MAX replicas (Kubernetes HPA), written MIN:MAX.")
        var autoscale: String?
        @Option(name: .customLong("env"), help: "NAME=VALUE for every service (repeatable), e.g. SENSOR_URL=http://sensor:8079.")
        var environment: [String] = []
        @Option(help: "Deploy only this service.")
        var only: String?
        @Option(help: "Move this service to the node given by --to: only its Deployment's node selector changes, and only it rolls. Its new pod takes its @Placed state over from the old one; to keep it on that node, say @Service(node: ...) in the file.")
        var move: String?
        @Option(help: "With --move: the node (its kubernetes.io/hostname).")
        var to: String?
        @Flag(help: "Apply the changed services (Kubernetes: checked by a server-side dry run, applied, and waited for until rolled out; Marathon: its REST API).")
        var apply = false
        @Flag(help: "Remove what deploys of this app created in the namespace (Kubernetes: its Deployments, Services and HPAs, found by label; the namespace too when a deploy created it and it is empty).")
        var delete = false
        @Option(help: "Kubernetes: the kubeconfig context to use (default: the current one).")
        var context: String?
        @Option(help: "Seconds to wait for the rollout (or, with --delete, for the app's pods to stop).")
        var timeout = 180
        @Option(help: "Kubernetes: the memory limit of every pod in MiB; each host's --max-buffered-bytes is half of it (default 256).")
        var memoryLimit = 256
        @Option(help: "Kubernetes: seconds a pod stays on a node that stopped answering before it is replaced on another node its placement allows (tolerations for node.kubernetes.io/unreachable and not-ready; Kubernetes' default is 300).")
        var nodeLossTimeout = 20
        @Flag(help: "Kubernetes: also write a NetworkPolicy per service, so that only its callers in main's dataflow (and any client, for the entry) reach it. Routes of your own between services that main does not chain then need it off.")
        var networkPolicy = false
        @Option(help: "Kubernetes: 'auto' runs the services that must share a node (near:, the same node:) in one pod, whose host calls them in process with typed values; each keeps its Service. @Service(isolated: true) keeps a service apart. 'none' (the default): a pod per service.")
        var fuse: Fusion = .none

        @Option(help: "Kubernetes: services with @Placed state also write it to this Redis server (redis://HOST:PORT[/PREFIX]), and a pod that finds no predecessor (its node was lost) starts from it. Without it, a lost node's state is gone.")
        var checkpoint: String?
        @Option(help: "With --checkpoint: 0 (the default) answers an update only once the store holds it; N writes at most every N ms and answers at once (up to N ms of updates may be lost with a node).")
        var checkpointInterval = 0

        func validate() throws {
            if let checkpoint, !checkpoint.hasPrefix("redis://") || checkpoint.dropFirst(8).isEmpty {
                throw ValidationError("--checkpoint must be redis://HOST:PORT or redis://HOST:PORT/PREFIX, got '\(checkpoint)'")
            }
            guard checkpointInterval >= 0 else { throw ValidationError("--checkpoint-interval must be 0 or more milliseconds") }
            if (move == nil) != (to == nil) { throw ValidationError("--move SERVICE and --to NODE go together") }
            if move != nil && delete { throw ValidationError("--move deploys; it cannot be combined with --delete") }
            if let move, let only, move != only { throw ValidationError("--move \(move) rolls only \(move); --only \(only) names another service") }
            guard FileManager.default.fileExists(atPath: file) else { throw ValidationError("no such file: \(file)") }
            guard target == "auto" || DeployTarget(rawValue: target) != nil else {
                throw ValidationError("--target must be auto, local, kubernetes or marathon")
            }
            if let autoscale {
                let parts = autoscale.split(separator: ":").compactMap { Int($0) }
                guard parts.count == 2, parts[0] >= 1, parts[1] >= parts[0] else { throw ValidationError("--autoscale must be MIN:MAX, e.g. 1:5") }
            }
            for item in environment where !item.contains("=") { throw ValidationError("--env must be NAME=VALUE, got '\(item)'") }
            if delete && apply { throw ValidationError("--delete removes the app: it cannot be combined with --apply") }
            guard timeout > 0 else { throw ValidationError("--timeout must be a positive number of seconds") }
            guard nodeLossTimeout >= 0 else { throw ValidationError("--node-loss-timeout must be 0 or more seconds") }
            guard memoryLimit >= 32 else { throw ValidationError("--memory-limit must be at least 32 (MiB)") }
        }

        func run() throws {
            let detection: Detection
            if let chosen = DeployTarget(rawValue: target) {
                detection = Detection(target: chosen, reason: "--target \(chosen.rawValue)")
            } else {
                detection = InfrastructureDetector.detect(environment: ProcessInfo.processInfo.environment)
            }
            note("target: \(detection.target.rawValue) (\(detection.reason))")
            if detection.target == .local {
                note("this machine: run the app with `dyninka run \(file)` (it starts one dyninka-host per service)")
                return
            }
            if delete { return try remove(detection.target) }
            let build = try buildApp(file: file, out: nil)
            var ir = build.ir
            if let move, let to {
                guard detection.target != .local else {
                    note("error: --move places a service on a node of a cluster; here the target is this machine (on a test bed: dyninka move \(move) --to \(to))")
                    throw ExitCode(1)
                }
                do { ir = try ir.moving(move, to: to) } catch {
                    note("error: \(error)")
                    throw ExitCode(1)
                }
                let state = ir.service(move)?.placedState ?? []
                note("moving \(move) to node \(to): only its Deployment's node selector changes")
                if !state.isEmpty {
                    note("\(move)'s @Placed state (\(state.joined(separator: ", "))) goes with it: the new pod on \(to) takes it over from the old one before it serves")
                }
                note("note: this deploy overrides the file; the next deploy without --move puts \(move) back where the file says, unless you write @Service(node: \"\(to)\") there")
            }
            var reference = image
            var onTestbed = false
            if image == nil && apply && detection.target == .kubernetes {
                onTestbed = Testbed.cluster(forKubeconfig: ProcessInfo.processInfo.environment["KUBECONFIG"]) != nil
                if onTestbed {
                    reference = try imageForTestbed(build)
                } else {
                    note("note: no --image: the nodes must be able to pull dyninka/\(ObjectNames.dns(build.ir.name)):latest; build the image with `dyninka image \(file)`, push it to a registry the cluster reaches and pass --image")
                }
            }
            var settings = DeploySettings(image: reference ?? "dyninka/\(ObjectNames.dns(ir.name)):latest",
                                          libraryPath: "/app/lib\(ir.name).so")
            settings.namespace = namespace
            settings.memoryLimitMiB = memoryLimit
            settings.nodeLossSeconds = nodeLossTimeout
            settings.checkpoint = checkpoint
            settings.checkpointInterval = checkpointInterval
            if checkpoint == nil, apply, detection.target == .kubernetes, ir.services.contains(where: { !$0.placedState.isEmpty }) {
                note("note: @Placed state goes from pod to pod on rollouts, moves and drains (with `dyninka guard`), but dies with a lost node unless --checkpoint names a store")
            }
            settings.networkPolicy = networkPolicy
            settings.fusion = fuse
            settings.sidecars = try sidecars(of: ir, build: build, onTestbed: onTestbed)
            if let autoscale {
                let parts = autoscale.split(separator: ":").compactMap { Int($0) }
                settings.autoscale = (parts[0], parts[1])
            }
            settings.environment = environment.map { item in
                let eq = item.firstIndex(of: "=")!
                return (String(item[..<eq]), String(item[item.index(after: eq)...]))
            }
            let output = out ?? AppBuilder.defaultOutput(for: file, name: ir.name) + "/deploy"
            let deployer = Deployer(ir: ir, settings: settings, output: output, packageDirectory: build.packageDirectory,
                                    sourceRoot: try AppBuilder.locateSourceRoot())
            let result: DeploymentResult
            do { result = try deployer.write(target: detection.target, only: only) } catch let failure as DeployFailure {
                note("error: \(failure)")
                throw ExitCode(1)
            }
            for file in result.files { say("\(output)/\(file)") }
            for line in result.notes { note("note: \(line)") }
            // An image built and imported here needs no docker build.
            if !onTestbed { note("build the image: \(result.buildCommand)") }
            if apply && detection.target == .kubernetes {
                return try applyToKubernetes(result, ir: ir, deployer: deployer)
            }
            note("changed since the last deployment: \(result.changed.isEmpty ? "none" : result.changed.joined(separator: ", "))")
            if !result.unchanged.isEmpty { note("unchanged (not rolled): \(result.unchanged.joined(separator: ", "))") }
            guard !result.applyCommand.isEmpty else { return }
            if apply {
                guard reachable(detection.target) else {
                    note("error: no \(detection.target.rawValue) reachable at $MARATHON_URL; apply with:\n  \(result.applyCommand)")
                    throw ExitCode(1)
                }
                note("applying: \(result.applyCommand)")
                let status = shell(result.applyCommand)
                guard status == 0 else {
                    note("error: applying failed (status \(status)); nothing was recorded as deployed")
                    throw ExitCode(1)
                }
                try deployer.recordDeployed(detection.target, only: only)
            } else {
                note("apply with: \(result.applyCommand)   (or pass --apply)")
                // The written files are the deployment of record when they are applied by hand.
                try deployer.recordDeployed(detection.target, only: only)
            }
        }

        /// On the cluster of a test bed (`testbed up --kubernetes`, this `$KUBECONFIG`), the image
        /// is built here and imported into every node, since its nodes pull from no registry (any
        /// other cluster's nodes pull `--image`, or the default name, themselves).
        private func imageForTestbed(_ build: BuildResult) throws -> String {
            let built = try buildImage(of: build, hostBinary: nil, output: nil, repository: nil)
            note("image \(built.reference): \(built.sizeLine)")
            do { try Testbed.importImage(built.archive, reference: built.reference) { note($0) } } catch {
                note("error: \(error)")
                throw ExitCode(1)
            }
            return built.reference
        }

        /// `dyninka.json`'s sidecars as containers in the pods of the services they are near, with
        /// their images: the one the file names, else (on a test bed's cluster) one built here and
        /// imported, else `dyninka/APP-sidecar-NAME:latest` for your registry.
        private func sidecars(of ir: AppIR, build: BuildResult, onTestbed: Bool) throws -> [DeploySidecar] {
            let folder = URL(fileURLWithPath: file).standardizedFileURL.deletingLastPathComponent().path
            let specs: [SidecarSpec]
            do { specs = try AppSettings.load(directory: folder).sidecars ?? [] } catch {
                note("error: \(error)")
                throw ExitCode(1)
            }
            var result: [DeploySidecar] = []
            for (index, spec) in specs.enumerated() {
                guard let near = spec.near, ir.service(near) != nil else {
                    note("error: sidecar '\(spec.name)' in \(folder)/dyninka.json: on a cluster a sidecar runs in the pod of the service it serves; give it \"near\": SERVICE (one of \(ir.services.map(\.name).joined(separator: ", ")))")
                    throw ExitCode(1)
                }
                let repository = "dyninka/\(ObjectNames.dns(ir.name))-sidecar-\(ObjectNames.dns(spec.name))"
                var image = spec.image ?? repository + ":latest"
                var command = spec.command
                if spec.image == nil && onTestbed {
                    let built: (built: ContainerImage.Built, program: String)
                    do {
                        built = try ContainerImage.buildSidecar(name: spec.name, command: spec.command, folder: folder,
                                                                repository: repository,
                                                                output: URL(fileURLWithPath: build.library).deletingLastPathComponent().path)
                        note("sidecar \(spec.name): image \(built.built.reference): \(built.built.sizeLine)")
                        try Testbed.importImage(built.built.archive, reference: built.built.reference) { note($0) }
                    } catch {
                        note("error: \(error)")
                        throw ExitCode(1)
                    }
                    image = built.built.reference
                    command[0] = built.program
                } else if spec.image == nil && apply {
                    note("note: sidecar \(spec.name) has no \"image\" in dyninka.json: the nodes must be able to pull \(image)")
                }
                result.append(DeploySidecar(name: spec.name, image: image, command: command, service: near, port: 8100 + index,
                                            health: spec.health, env: spec.env))
            }
            return result
        }

        /// `--apply` on Kubernetes: the cluster is the record of what runs. Services whose
        /// generated objects differ from the live ones (by spec hash) are checked by a server-side
        /// dry run, applied, and waited for; a summary lists every Deployment of the app.
        private func applyToKubernetes(_ result: DeploymentResult, ir: AppIR, deployer: Deployer) throws {
            do {
                let cluster = try KubernetesCluster.connect(try Kubectl(context: context), namespace: namespace)
                note("cluster: \(cluster.place), Kubernetes \(cluster.version)")
                let apply = KubernetesApply(cluster: cluster, ir: ir, written: result, output: deployer.output, only: only, timeout: timeout)
                let rolled: [String]
                do { rolled = try apply.run { note($0) } } catch let failure as KubernetesCluster.RolloutFailure {
                    note("error: \(failure)")
                    note("the applied objects stay; fix the cause and deploy again, or remove the app with --delete")
                    throw ExitCode(1)
                }
                say("\(apply.app) in \(cluster.place):")
                let rows = try apply.summary(rolled: rolled)
                let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
                for row in rows {
                    say(("  " + zip(row, widths).map { $0.0.padding(toLength: $0.1, withPad: " ", startingAt: 0) }.joined(separator: "  "))
                        .replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression))
                }
                // What the new pods of stateful services said about the state they took over.
                for line in apply.handOverOutcomes(of: rolled) { say("  \(line)") }
            } catch let failure as KubectlFailure {
                note("error: \(explain(failure))")
                if failure.kind == .unreachable || failure.kind == .notInstalled {
                    note("the files are written; apply them later with:\n  kubectl apply --server-side -f \(deployer.output)/kubernetes")
                }
                throw ExitCode(1)
            }
        }

        /// `--delete`: removes what deploys of the app created.
        private func remove(_ target: DeployTarget) throws {
            let source = try String(contentsOfFile: file, encoding: .utf8)
            let ir: AppIR
            do { ir = try Analyzer(file: file, source: source).analyze().ir } catch {
                note(error.description)
                throw ExitCode(1)
            }
            let app = ObjectNames.dns(ir.name)
            switch target {
            case .kubernetes:
                do {
                    let cluster = try KubernetesCluster.connect(try Kubectl(context: context), namespace: namespace)
                    note("cluster: \(cluster.place), Kubernetes \(cluster.version)")
                    note("deleting what deploys of \(app) created (label \(KubernetesCluster.selector(app: app)))")
                    let lines = try cluster.delete(app: app, timeout: timeout) { note("  \($0)") }
                    if lines.isEmpty { note("nothing of \(app) is deployed in namespace '\(cluster.namespace)'") }
                    for line in lines { say(line) }
                } catch {
                    note("error: \(explain(error))")
                    throw ExitCode(1)
                }
            case .marathon:
                let command = "curl -fsS -X DELETE \"$MARATHON_URL/v2/groups/\(app)\""
                guard reachable(.marathon) else {
                    note("error: no Marathon reachable at $MARATHON_URL; delete with:\n  \(command)")
                    throw ExitCode(1)
                }
                note("deleting: \(command)")
                guard shell(command) == 0 else {
                    note("error: Marathon refused the delete of group /\(app)")
                    throw ExitCode(1)
                }
            case .local:
                break
            }
        }

        /// A kubectl failure as a user can act on it.
        private func explain(_ failure: KubectlFailure) -> String {
            let inNamespace = namespace ?? "default"
            switch failure.kind {
            case .notInstalled:
                return failure.message
            case .unreachable:
                return "no Kubernetes API server answers: \(failure.message)\n  Start the cluster, or point KUBECONFIG (or --context) at one that runs."
            case .unauthorized:
                return "the API server does not accept the kubeconfig's credentials: \(failure.message)\n  Renew them (for example log in again) and retry."
            case .forbidden:
                let user = failure.forbiddenUser ?? "USER"
                return """
                    the cluster refused permission: \(failure.message)
                      The kubeconfig's user needs to get, create and patch Deployments, Services and HorizontalPodAutoscalers, \
                    and to list pods and events, in namespace '\(inNamespace)'; an admin can grant that with:
                        kubectl create rolebinding dyninka-deploy --clusterrole=edit --user=\(user) -n \(inNamespace)
                      Nothing was applied.
                    """
            case .refused:
                return "the API server refused the app's objects; nothing was applied:\n\(failure.message)"
            case .notFound, .failed:
                return "kubectl \(failure.arguments.joined(separator: " ")) failed: \(failure.message)"
            }
        }

        private func reachable(_ target: DeployTarget) -> Bool {
            switch target {
            case .kubernetes: return true
            case .marathon: return shell("curl -fsS --max-time 5 \"$MARATHON_URL/v2/info\" >/dev/null 2>&1") == 0
            case .local: return true
            }
        }

        private func shell(_ command: String) -> Int32 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", command]
            do { try process.run() } catch { return 127 }
            process.waitUntilExit()
            return process.terminationStatus
        }
    }
}
