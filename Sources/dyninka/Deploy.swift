import ArgumentParser
import DyninkaCompiler
import DyninkaDeploy
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
                since the last deployment, and --apply applies only those.

                Examples:
                  dyninka deploy App.swift --target kubernetes \\
                      --image registry.example/smart-building:1
                  dyninka deploy App.swift --only map --apply
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
        @Flag(help: "Apply the changed services (kubectl, or Marathon's REST API) when the target is reachable.")
        var apply = false

        func validate() throws {
            guard FileManager.default.fileExists(atPath: file) else { throw ValidationError("no such file: \(file)") }
            guard target == "auto" || DeployTarget(rawValue: target) != nil else {
                throw ValidationError("--target must be auto, local, kubernetes or marathon")
            }
            if let autoscale {
                let parts = autoscale.split(separator: ":").compactMap { Int($0) }
                guard parts.count == 2, parts[0] >= 1, parts[1] >= parts[0] else { throw ValidationError("--autoscale must be MIN:MAX, e.g. 1:5") }
            }
            for item in environment where !item.contains("=") { throw ValidationError("--env must be NAME=VALUE, got '\(item)'") }
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
            let build = try buildApp(file: file, out: nil)
            var settings = DeploySettings(image: image ?? "dyninka/\(ObjectNames.dns(build.ir.name)):latest",
                                          libraryPath: "/app/lib\(build.ir.name).so")
            settings.namespace = namespace
            if let autoscale {
                let parts = autoscale.split(separator: ":").compactMap { Int($0) }
                settings.autoscale = (parts[0], parts[1])
            }
            settings.environment = environment.map { item in
                let eq = item.firstIndex(of: "=")!
                return (String(item[..<eq]), String(item[item.index(after: eq)...]))
            }
            let output = out ?? AppBuilder.defaultOutput(for: file, name: build.ir.name) + "/deploy"
            let deployer = Deployer(ir: build.ir, settings: settings, output: output, packageDirectory: build.packageDirectory,
                                    sourceRoot: try AppBuilder.locateSourceRoot())
            let result: DeploymentResult
            do { result = try deployer.write(target: detection.target, only: only) } catch let failure as DeployFailure {
                note("error: \(failure)")
                throw ExitCode(1)
            }
            for file in result.files { say("\(output)/\(file)") }
            note("changed since the last deployment: \(result.changed.isEmpty ? "none" : result.changed.joined(separator: ", "))")
            if !result.unchanged.isEmpty { note("unchanged (not rolled): \(result.unchanged.joined(separator: ", "))") }
            for line in result.notes { note("note: \(line)") }
            note("build the image: \(result.buildCommand)")
            guard !result.applyCommand.isEmpty else { return }
            if apply {
                if reachable(detection.target) {
                    note("applying: \(result.applyCommand)")
                    let status = shell(result.applyCommand)
                    guard status == 0 else {
                        note("error: applying failed (status \(status)); nothing was recorded as deployed")
                        throw ExitCode(1)
                    }
                    try deployer.recordDeployed(detection.target, only: only)
                } else {
                    note("no \(detection.target.rawValue) reachable from here; apply with:\n  \(result.applyCommand)")
                }
            } else {
                note("apply with: \(result.applyCommand)   (or pass --apply)")
                // The written files are the deployment of record when they are applied by hand.
                try deployer.recordDeployed(detection.target, only: only)
            }
        }

        private func reachable(_ target: DeployTarget) -> Bool {
            switch target {
            case .kubernetes: return shell("kubectl cluster-info --request-timeout=5s >/dev/null 2>&1") == 0
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
