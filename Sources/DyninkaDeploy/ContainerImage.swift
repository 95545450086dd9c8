import CDyninkaCrypto
import DyninkaSystem
import Foundation

/// A container image of one app, built from this machine's files without a daemon, a registry or
/// a shell: the release `dyninka-host` and the app library (both stripped), exactly the shared
/// libraries they load (found with `ldd`: the C library and its loader, libuv, libcrypto, the
/// Swift runtime and Foundation), `/etc/passwd` and `/etc/group` naming the non-root user
/// 65532, and an empty `/tmp`. One layer, written byte for byte (`TarArchive`): the same inputs
/// give the same digests.
///
/// The result is a docker-archive tarball (what `ctr images import`, the Kubernetes kit's
/// `node import` and `docker load` read), and beside it the layer gzipped (`gzip -9n`, also
/// reproducible), whose size is what a registry would hold and a node would pull.
package enum ContainerImage {
    /// Where the parts live in the image.
    package static let hostPath = "/usr/local/bin/dyninka-host"
    package static func libraryPath(app: String) -> String { "/app/lib\(app).so" }
    /// The user the image runs as (no root, no shell).
    package static let user = 65532

    /// What was built.
    package struct Built: Sendable {
        /// The docker-archive tarball.
        package var archive: String
        /// The gzipped layer beside it.
        package var compressedLayer: String
        /// The image's name, e.g. `dyninka/smart-building:3f2a1c9e0b7d`.
        package var reference: String
        /// The config's digest: the image ID, the same for the same inputs.
        package var id: String
        /// The uncompressed layer's digest (the rootfs diff ID).
        package var layerDigest: String
        package var layerBytes: Int
        package var compressedBytes: Int
        /// Every path in the layer, and its size in bytes (0 for directories and links).
        package var files: [(path: String, bytes: Int)]
    }

    /// Why the image could not be built: what, and what to do.
    package struct Failure: Error, CustomStringConvertible, Sendable {
        package var description: String
        init(_ description: String) { self.description = description }
    }

    /// Builds the image of `app` (the app's name, as in `lib<app>.so`) into the folder `output`:
    /// `<output>/<app>.image.tar` and `<output>/<app>.layer.tar.gz`. `repository` is the image's
    /// name without a tag; the tag is the first 12 hex digits of the image ID.
    package static func build(app: String, hostBinary: String, appLibrary: String, repository: String,
                              output: String, port: Int = 8080) throws(Failure) -> Built {
        let scratch = output + "/.image-\(getpid())"
        try? FileManager.default.removeItem(atPath: scratch)
        do { try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true) } catch {
            throw Failure("cannot create \(scratch): \(error.localizedDescription)")
        }
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let host = try stripped(hostBinary, into: scratch + "/dyninka-host")
        let library = try stripped(appLibrary, into: scratch + "/lib\(app).so")
        var entries: [TarArchive.Entry] = [
            .init(path: hostPath, kind: .file(host), mode: 0o755),
            .init(path: libraryPath(app: app), kind: .file(library), mode: 0o644),
        ] + userEntries
        for path in try sharedLibraries(of: [hostBinary, appLibrary]) {
            let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            guard let data = FileManager.default.contents(atPath: real) else { throw Failure("cannot read \(real) (needed by the host)") }
            entries.append(.init(path: path, kind: .file(Array(data)), mode: 0o755))
        }
        let config = ImageConfig(entrypoint: [hostPath], command: ["serve", "--app", libraryPath(app: app), "--host", "0.0.0.0", "--port", String(port)],
                                 port: port, workingDirectory: "/")
        return try write(entries, config: config, repository: repository, name: app, output: output)
    }

    /// What every image holds for its user: `/etc/passwd` and `/etc/group` naming 65532, its
    /// home, and an empty `/tmp`.
    static var userEntries: [TarArchive.Entry] {
        [
            .init(path: "/etc/passwd", kind: .file(Array("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:\(user):\(user):nonroot:/home/nonroot:/sbin/nologin\n".utf8)), mode: 0o644),
            .init(path: "/etc/group", kind: .file(Array("root:x:0:\nnonroot:x:\(user):\n".utf8)), mode: 0o644),
            .init(path: "/tmp", kind: .directory, mode: 0o1777),
            .init(path: "/home/nonroot", kind: .directory, mode: 0o755, owner: user),
        ]
    }

    /// What the image config says about running it.
    struct ImageConfig {
        var entrypoint: [String]
        var command: [String]
        var port: Int?
        var workingDirectory: String
    }

    /// Writes `entries` (and their parent folders) as one layer, the docker-archive
    /// `<output>/<name>.image.tar` and the gzipped layer `<output>/<name>.layer.tar.gz`.
    static func write(_ files: [TarArchive.Entry], config: ImageConfig, repository: String, name: String,
                      output: String) throws(Failure) -> Built {
        let entries = files + parentDirectories(of: files)
        let layer: [UInt8]
        do { layer = try TarArchive.bytes(entries) } catch { throw Failure(error.description) }
        let diffID = "sha256:" + sha256(layer)
        let configText = configJSON(diffID: diffID, config: config)
        let id = sha256(Array(configText.utf8))
        let reference = "\(repository):\(id.prefix(12))"
        let configName = id + ".json", layerName = String(diffID.dropFirst(7)) + "/layer.tar"
        let manifest = #"[{"Config":"\#(configName)","RepoTags":["\#(reference)"],"Layers":["\#(layerName)"]}]"#
        let archive: [UInt8]
        do {
            archive = try TarArchive.bytes([
                .init(path: configName, kind: .file(Array(configText.utf8)), mode: 0o644),
                .init(path: String(diffID.dropFirst(7)), kind: .directory, mode: 0o755),
                .init(path: layerName, kind: .file(layer), mode: 0o644),
                .init(path: "manifest.json", kind: .file(Array(manifest.utf8)), mode: 0o644),
            ])
        } catch { throw Failure(error.description) }
        let archivePath = output + "/\(name).image.tar", layerPath = output + "/\(name).layer.tar"
        guard FileManager.default.createFile(atPath: archivePath, contents: Data(archive)),
              FileManager.default.createFile(atPath: layerPath, contents: Data(layer)) else {
            throw Failure("cannot write the image into \(output)")
        }
        try? FileManager.default.removeItem(atPath: layerPath + ".gz")
        try run("gzip", ["-9n", layerPath], doing: "compress the layer")
        let compressed = (try? FileManager.default.attributesOfItem(atPath: layerPath + ".gz"))?[.size] as? Int ?? 0
        let listed = entries.sorted { $0.path < $1.path }.map { entry -> (String, Int) in
            if case .file(let data) = entry.kind { return ("/" + entry.path, data.count) }
            return ("/" + entry.path, 0)
        }
        return Built(archive: archivePath, compressedLayer: layerPath + ".gz", reference: reference, id: "sha256:" + id,
                     layerDigest: diffID, layerBytes: layer.count, compressedBytes: compressed, files: listed)
    }

    /// The shared libraries `binaries` load, by the paths the loader finds them at (the loader
    /// itself included), each once, in order.
    package static func sharedLibraries(of binaries: [String]) throws(Failure) -> [String] {
        var found: [String] = []
        for binary in binaries {
            let output = try run("ldd", [binary], doing: "list the libraries of \(binary)")
            for line in output.split(separator: "\n") {
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
                if line.contains("not found") {
                    throw Failure("\(binary) needs \(words.first ?? "a library"), which this machine does not have: install it (scripts/bootstrap) and build again")
                }
                // "name => /path (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
                let path = words.count >= 3 && words[1] == "=>" ? words[2] : words.first ?? ""
                if path.hasPrefix("/"), !found.contains(path) { found.append(path) }
            }
        }
        return found
    }

    /// The directories above every entry that are not entries themselves, mode 0755.
    private static func parentDirectories(of entries: [TarArchive.Entry]) -> [TarArchive.Entry] {
        var have = Set(entries.map(\.path))
        var added: [TarArchive.Entry] = []
        for entry in entries {
            var parts = entry.path.split(separator: "/").dropLast()
            while !parts.isEmpty {
                let directory = parts.joined(separator: "/")
                if !have.contains(directory) {
                    have.insert(directory)
                    added.append(.init(path: directory, kind: .directory, mode: 0o755))
                }
                parts = parts.dropLast()
            }
        }
        return added
    }

    /// The image config: the entry point, the user, the port; nothing that changes between builds.
    private static func configJSON(diffID: String, config: ImageConfig) -> String {
        let created = "2025-12-07T00:00:00Z"
        func list(_ words: [String]) -> String { "[" + words.map { "\"\($0)\"" }.joined(separator: ",") + "]" }
        let ports = config.port.map { #","ExposedPorts":{"\#($0)/tcp":{}}"# } ?? ""
        return #"{"architecture":"amd64","config":{"Entrypoint":\#(list(config.entrypoint)),"Cmd":\#(list(config.command)),"Env":["PATH=/usr/local/bin:/usr/bin:/bin"]\#(ports),"User":"\#(user):\#(user)","WorkingDir":"\#(config.workingDirectory)"},"created":"\#(created)","history":[{"created":"\#(created)","created_by":"dyninka image"}],"os":"linux","rootfs":{"diff_ids":["\#(diffID)"],"type":"layers"}}"#
    }

    /// A copy of `path` without its symbol table and debug information, read back.
    private static func stripped(_ path: String, into copy: String) throws(Failure) -> [UInt8] {
        try run("strip", ["--strip-unneeded", "-o", copy, path], doing: "strip \(path)")
        guard let data = FileManager.default.contents(atPath: copy) else { throw Failure("cannot read \(copy)") }
        return Array(data)
    }

    @discardableResult
    static func run(_ tool: String, _ arguments: [String], doing what: String) throws(Failure) -> String {
        let output: CommandOutput
        do { output = try Command.run("/usr/bin/env", [tool] + arguments) } catch {
            throw Failure("cannot \(what): \(error)")
        }
        guard output.status == 0 else {
            throw Failure("cannot \(what): \(tool) exited \(output.status): \(output.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return output.stdout
    }

    /// The SHA-256 of `bytes` in hex.
    package static func sha256(_ bytes: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        let ok = bytes.withUnsafeBufferPointer { data in digest.withUnsafeMutableBufferPointer { dyn_sha256(data.baseAddress, data.count, $0.baseAddress) } }
        precondition(ok == 1, "libcrypto could not compute a SHA-256")
        return digest.map { String(($0 >> 4) & 0xf, radix: 16) + String($0 & 0xf, radix: 16) }.joined()
    }
}
