import DyninkaCompiler
import Foundation

/// What `dyninka deploy` wrote and what it found changed since the last deployment.
package struct DeploymentResult: Sendable {
    package var target: DeployTarget
    /// Files written, relative to the output folder.
    package var files: [String]
    /// Services whose code hash differs from the last deployment (all, the first time).
    package var changed: [String]
    package var unchanged: [String]
    package var notes: [String]
    /// The command that applies the written files.
    package var applyCommand: String
    /// The command that builds the image.
    package var buildCommand: String
    /// Kubernetes: the hash of what was generated for each service (`dyninka.io/spec-hash`).
    package var specHashes: [String: String] = [:]
    /// Kubernetes: the manifest file of each service, as a path.
    package var manifests: [String: String] = [:]
    /// The settings it was written with.
    package var settings: DeploySettings
}

/// Writes an app's deployment for Kubernetes or Marathon, and remembers (per target) what it deployed so
/// that the next deployment lists (and applies) only the services whose code changed.
package struct Deployer: Sendable {
    package var ir: AppIR
    package var settings: DeploySettings
    /// Where the files go; `deployed-TARGET.json` there records each service's code hash.
    package var output: String
    /// The generated app package (`dyninka build`), copied into the image.
    package var packageDirectory: String
    package var sourceRoot: String

    package init(ir: AppIR, settings: DeploySettings, output: String, packageDirectory: String, sourceRoot: String) {
        self.ir = ir
        self.settings = settings
        self.output = output
        self.packageDirectory = packageDirectory
        self.sourceRoot = sourceRoot
    }

    /// The app key's Secret, relative to the output folder.
    package static let keySecretFile = "kubernetes/app-key-secret.yaml"

    /// Each target keeps its own record: deploying to Marathon says nothing about Kubernetes.
    /// (A Kubernetes deploy with --apply asks the cluster instead: what runs there is the record.)
    func statePath(_ target: DeployTarget) -> String { output + "/deployed-\(target.rawValue).json" }

    /// Code hashes of the last deployment to `target` written without a cluster, by service.
    package func lastDeployed(_ target: DeployTarget) -> [String: String] {
        guard let data = FileManager.default.contents(atPath: statePath(target)),
              let state = try? JSONDecoder().decode([String: String].self, from: data) else { return [:] }
        return state
    }

    /// Writes the files for `target`; `only` limits them to one service.
    package func write(target: DeployTarget, only: String?) throws -> DeploymentResult {
        if let only, ir.service(only) == nil {
            throw DeployFailure("--only \(only): no such service; this app has \(ir.services.map(\.name).joined(separator: ", "))")
        }
        let last = lastDeployed(target)
        let selected = ir.services.filter { only == nil || $0.name == only }
        let changed = selected.filter { last[$0.name] != $0.codeHash }.map(\.name)
        let unchanged = selected.filter { last[$0.name] == $0.codeHash }.map(\.name)
        let fm = FileManager.default
        try fm.createDirectory(atPath: output, withIntermediateDirectories: true)
        var files: [String] = []
        var notes: [String] = []
        var applyCommand = ""
        var specHashes: [String: String] = [:]
        var manifests: [String: String] = [:]
        switch target {
        case .kubernetes:
            if settings.autoscale != nil {
                for service in selected where !KubernetesManifests.scalable(service) {
                    let state = service.placedState.joined(separator: ", ")
                    if only != nil {
                        throw DeployFailure("--autoscale: '\(service.name)' owns @Placed state (\(state)), which lives in one process: more replicas would each count on their own. Deploy it without --autoscale")
                    }
                    notes.append("no autoscaler for '\(service.name)': it owns @Placed state (\(state)), which lives in one process, so it keeps one replica")
                }
            }
            let folder = output + "/kubernetes"
            try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
            // The app key: made once and kept beside the manifests (readable by this user only);
            // `--apply` creates the Secret when the namespace has none, and never replaces one.
            let keyFile = output + "/" + Self.keySecretFile
            if !fm.fileExists(atPath: keyFile) {
                var generator = SystemRandomNumberGenerator()
                let key = (0..<4).map { _ in
                    let digits = String(generator.next(), radix: 16)
                    return String(repeating: "0", count: 16 - digits.count) + digits
                }.joined()
                let yaml = try KubernetesManifests.keySecret(ir, key: key)
                guard fm.createFile(atPath: keyFile, contents: Data(yaml.utf8), attributes: [.posixPermissions: 0o600]) else {
                    throw DeployFailure("cannot write the app key's Secret to \(keyFile)")
                }
            }
            files.append(Self.keySecretFile)
            notes.append("the app key (a Secret, \(Self.keySecretFile), readable by you only) signs the hops between services: clients may run only main's chain, at '\(ir.dataflow.entry)'; keep the file, and apply it once before the services (--apply does)")
            for service in selected where !service.placedState.isEmpty {
                notes.append("'\(service.name)' owns @Placed state (\(service.placedState.joined(separator: ", "))), which lives in its one pod: a rollout, a move or a drain starts the new pod next to the old one, which hands the state over (signed with the app key, through the headless Service \(KubernetesManifests.handOverServiceName((try? ObjectNames.checked(ir))?[service.name] ?? service.name))) and relays requests to it until it stops; a lost node loses the state (see the docs)")
            }
            let onlyUnit = only.map { KubernetesManifests.unit(of: $0, ir, settings: settings) }
            for group in KubernetesManifests.units(ir, settings: settings) where group.count > 1 {
                notes.append("fused: \(group.map { "'\($0)'" }.joined(separator: ", ")) run in one pod (Deployment \(ObjectNames.dns(ir.name))-\(ObjectNames.dns(group[0]))), calling each other in process; each keeps its Service, and a crash of one restarts them all")
            }
            for (service, yaml, specHash) in try KubernetesManifests.generate(ir, settings: settings) where onlyUnit == nil || service == onlyUnit {
                let name = "kubernetes/\(ObjectNames.dns(service)).yaml"
                try yaml.write(toFile: output + "/" + name, atomically: true, encoding: .utf8)
                files.append(name)
                specHashes[service] = specHash
                manifests[service] = output + "/" + name
            }
            // A fused unit's file is its first service's.
            var units: [String] = []
            for service in changed {
                let unit = KubernetesManifests.unit(of: service, ir, settings: settings)
                if !units.contains(unit) { units.append(unit) }
            }
            let paths = units.map { "-f \(output)/kubernetes/\(ObjectNames.dns($0)).yaml" }
            let namespace = settings.namespace.map { " -n \($0)" } ?? ""
            applyCommand = changed.isEmpty ? "" : "kubectl create\(namespace) -f \(keyFile) 2>/dev/null; kubectl apply \(paths.joined(separator: " "))"
        case .marathon:
            if settings.fusion != .none {
                throw DeployFailure("--fuse auto groups services into Kubernetes pods; a Marathon app runs one host per service: deploy without --fuse")
            }
            let (json, marathonNotes) = try MarathonGroup.generate(ir, settings: settings)
            notes += marathonNotes
            try fm.createDirectory(atPath: output + "/marathon", withIntermediateDirectories: true)
            let name = "marathon/\(ObjectNames.dns(ir.name)).json"
            try json.write(toFile: output + "/" + name, atomically: true, encoding: .utf8)
            files.append(name)
            applyCommand = changed.isEmpty ? "" : "curl -fsS -X PUT -H 'Content-Type: application/json' \"$MARATHON_URL/v2/groups\" --data @\(output)/\(name)"
        case .local:
            throw DeployFailure("the local target runs the app on this machine: use `dyninka run`")
        }
        try containerfile().write(toFile: output + "/Containerfile", atomically: true, encoding: .utf8)
        files.append("Containerfile")
        let buildCommand = "docker build -f \(output)/Containerfile --build-context app=\(packageDirectory) -t \(settings.image) \(sourceRoot)"
        return DeploymentResult(target: target, files: files, changed: changed, unchanged: unchanged, notes: notes,
                                applyCommand: applyCommand, buildCommand: buildCommand, specHashes: specHashes, manifests: manifests,
                                settings: settings)
    }

    /// Records the hashes as deployed (after a successful apply, or when the files are the deployment).
    package func recordDeployed(_ target: DeployTarget, only: String?) throws {
        var state = lastDeployed(target)
        for service in ir.services where only == nil || service.name == only { state[service.name] = service.codeHash }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(state).write(to: URL(fileURLWithPath: statePath(target)))
    }

    /// The image: a build stage with the Swift toolchain builds dyninka-host and the app library
    /// (the generated package needs no swift-syntax), a runtime stage carries the Swift runtime
    /// libraries, libuv, dyninka-host and the library.
    package func containerfile() -> String {
        """
        # Generated by `dyninka deploy` for \(ir.name). Build (BuildKit, from the dyninka checkout):
        #   docker build -f Containerfile --build-context app=PATH/TO/GENERATED/PACKAGE -t IMAGE DYNINKA_CHECKOUT
        ARG SWIFT_IMAGE=swift:6.3-bookworm
        FROM ${SWIFT_IMAGE} AS build
        # Debian's current packages of the base image's release (no pins: they would break at its next point release).
        # hadolint ignore=DL3008
        RUN apt-get update && apt-get install -y --no-install-recommends libuv1-dev pkg-config python3-pip && rm -rf /var/lib/apt/lists/*
        WORKDIR /src
        COPY Package.swift ./
        COPY CSupport CSupport
        COPY Sources Sources
        COPY Tests/Fixtures Tests/Fixtures
        COPY scripts scripts
        RUN scripts/bootstrap && swift build -c release --product dyninka-host
        # `app` is the named build context (--build-context app=...), not a stage.
        # hadolint ignore=DL3022
        COPY --from=app . /app-package
        RUN swift build -c release --package-path /app-package --product \(ir.name)

        FROM ${SWIFT_IMAGE}-slim
        # hadolint ignore=DL3008
        RUN apt-get update && apt-get install -y --no-install-recommends libuv1 libssl3 && rm -rf /var/lib/apt/lists/*
        COPY --from=build /src/.build/release/dyninka-host /usr/local/bin/dyninka-host
        COPY --from=build /app-package/.build/release/lib\(ir.name).so \(settings.libraryPath)
        USER 65532:65532
        EXPOSE \(settings.port)
        ENTRYPOINT ["dyninka-host"]

        """
    }
}
