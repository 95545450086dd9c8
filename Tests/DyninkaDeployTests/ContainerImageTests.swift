import DyninkaDeploy
import Foundation
import Testing

/// The offline image: written byte for byte the same for the same inputs, holding exactly what
/// the host needs, and running as a real container (runc) as the non-root user, without a shell.
@Suite(.serialized) struct ContainerImageTests {
    /// The debug build's folder (the test bundle's), where dyninka-host and the fixture library are.
    static let products = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().path
    static var host: String { products + "/dyninka-host" }
    static var fixture: String { products + "/libDyninkaFixture.so" }

    private func folder() -> String {
        let path = NSTemporaryDirectory() + "dyninka-image-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private func sh(_ command: String) -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try? process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func archivesAreTheSameBytesForTheSameEntriesAndReadByTar() throws {
        let long = "opt/" + String(repeating: "d", count: 90) + "/" + String(repeating: "f", count: 60) + ".so"
        let entries: [TarArchive.Entry] = [
            .init(path: "/usr/local/bin/tool", kind: .file(Array("#!x\n".utf8)), mode: 0o755),
            .init(path: "/tmp", kind: .directory, mode: 0o1777),
            .init(path: "/home/nonroot", kind: .directory, mode: 0o755, owner: 65532),
            .init(path: "/lib/link.so", kind: .symlink("real.so"), mode: 0o777),
            .init(path: long, kind: .file([1, 2, 3]), mode: 0o644),
        ]
        let first = try TarArchive.bytes(entries)
        #expect(try TarArchive.bytes(entries.reversed()) == first, "the order of the entries does not matter")
        #expect(first.count % 512 == 0)
        let dir = folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(FileManager.default.createFile(atPath: dir + "/a.tar", contents: Data(first)))
        let listing = sh("tar -tvf '\(dir)/a.tar' --numeric-owner")
        #expect(listing.status == 0, "\(listing.output)")
        let lines = listing.output.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("drwxrwxrwt 0/0") && $0.hasSuffix(" tmp/") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("drwxr-xr-x 65532/65532") && $0.hasSuffix(" home/nonroot/") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("lrwxrwxrwx 0/0") && $0.hasSuffix("lib/link.so -> real.so") }, "\(lines)")
        #expect(lines.contains { $0.contains("2025-12-07 00:00") && $0.hasSuffix(long) }, "the long path is split, not cut: \(lines)")
        #expect(sh("cd '\(dir)' && mkdir x && tar -xf a.tar -C x && cat x/usr/local/bin/tool").output == "#!x\n")
    }

    @Test func theImageIsReproducibleAndHoldsWhatTheHostLoads() throws {
        let dir = folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let one = try ContainerImage.build(app: "DyninkaFixture", hostBinary: Self.host, appLibrary: Self.fixture, repository: "dyninka/fixture",
                                           output: dir)
        let archive = try Data(contentsOf: URL(fileURLWithPath: one.archive))
        let two = try ContainerImage.build(app: "DyninkaFixture", hostBinary: Self.host, appLibrary: Self.fixture, repository: "dyninka/fixture",
                                           output: dir)
        #expect(one.id == two.id && one.layerDigest == two.layerDigest)
        #expect(try Data(contentsOf: URL(fileURLWithPath: two.archive)) == archive, "the same inputs give the same archive")
        #expect(one.reference == "dyninka/fixture:" + one.id.dropFirst(7).prefix(12))
        let paths = Set(one.files.map(\.path))
        for needed in ["/usr/local/bin/dyninka-host", "/app/libDyninkaFixture.so", "/lib64/ld-linux-x86-64.so.2", "/etc/passwd", "/tmp"] {
            #expect(paths.contains(needed), "\(needed) is missing: \(paths.sorted())")
        }
        for library in try ContainerImage.sharedLibraries(of: [Self.host]) {
            #expect(paths.contains(library), "\(library), which the host loads, is missing")
        }
        #expect(!paths.contains { $0.hasSuffix("/sh") || $0.hasSuffix("/bash") }, "no shell")
        #expect(one.compressedBytes > 1_000_000 && one.compressedBytes < one.layerBytes)
        // The docker-archive's parts: its manifest names the config and the layer by digest.
        let manifest = sh("tar -xOf '\(one.archive)' manifest.json").output
        #expect(manifest.contains(#""RepoTags":["\#(one.reference)"]"#) && manifest.contains(one.layerDigest.dropFirst(7) + "/layer.tar"))
        let config = sh("tar -xOf '\(one.archive)' '\(one.id.dropFirst(7)).json'").output
        #expect(config.contains(#""User":"65532:65532""#) && config.contains(#""diff_ids":["\#(one.layerDigest)"]"#), "\(config)")
        #expect(ContainerImage.sha256(Array(config.utf8)) == String(one.id.dropFirst(7)), "the config's digest is the image ID")
    }

    static var canRunContainers: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/runc")
    }

    @Test(.enabled(if: ContainerImageTests.canRunContainers, "needs root and runc (scripts/bootstrap installs it)"))
    func theImageRunsAsARealContainerAsTheNonRootUser() throws {
        let dir = folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = try ContainerImage.build(app: "DyninkaFixture", hostBinary: Self.host, appLibrary: Self.fixture, repository: "dyninka/fixture",
                                             output: dir)
        // An OCI bundle from the image's one layer: read-only, the host's network (loopback).
        let bundle = dir + "/bundle"
        #expect(sh("mkdir -p '\(bundle)/rootfs' && tar -xOf '\(image.archive)' '\(image.layerDigest.dropFirst(7))/layer.tar' | tar -xf - -C '\(bundle)/rootfs' && cd '\(bundle)' && runc spec").status == 0)
        let port = Int.random(in: 20_000...29_999)
        let specPath = bundle + "/config.json"
        var spec = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: specPath))) as! [String: Any]
        var process = spec["process"] as! [String: Any]
        process["terminal"] = false
        process["args"] = [ContainerImage.hostPath, "serve", "--app", ContainerImage.libraryPath(app: "DyninkaFixture"), "--service", "map",
                           "--host", "127.0.0.1", "--port", String(port)]
        process["user"] = ["uid": 65532, "gid": 65532]
        spec["process"] = process
        var root = spec["root"] as! [String: Any]
        root["readonly"] = true
        spec["root"] = root
        var linux = spec["linux"] as! [String: Any]
        linux["namespaces"] = (linux["namespaces"] as! [[String: Any]]).filter { $0["type"] as? String != "network" }
        spec["linux"] = linux
        spec["mounts"] = (spec["mounts"] as! [[String: Any]]) + [["destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]]]
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: specPath))
        let name = "dyninka-image-test-\(getpid())"
        defer { _ = sh("runc kill \(name) KILL; sleep 0.3; runc delete -f \(name)") }
        let started = sh("runc run -d --bundle '\(bundle)' \(name) > '\(dir)/out' 2>&1")
        #expect(started.status == 0, "\(sh("cat '\(dir)/out'").output)")
        var health = ""
        for _ in 0..<50 where health != "ok" {
            usleep(100_000)
            health = sh("curl -s -m 2 http://127.0.0.1:\(port)/healthz").output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(health == "ok", "\(sh("cat '\(dir)/out'").output)")
        let answer = sh(#"curl -s -m 2 -X POST -H 'Dyninka-Route;' -d '{"sensor":"a","variable":"Temperature","value":20}' http://127.0.0.1:\#(port)/"#)
        #expect(answer.output == #"{"value":20}"#, "map answers with the reading's value: \(answer.output)")
        let user = sh("ps -o user= -C dyninka-host | sort -u").output
        #expect(user.contains("65532"), "the host runs as 65532: \(user)")
    }
}
