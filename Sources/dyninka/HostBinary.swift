import DyninkaCompiler
import DyninkaRunner
import DyninkaSystem
import DyninkaTestbed
import DyninkaView
import Foundation

/// Which `dyninka-host` `dyninka run` starts: `--host-binary`, else `$DYNINKA_HOST_BIN`, else a
/// release build of this checkout's host, so that what a user measures locally is what they would
/// deploy. The release host is built in its own scratch folder (`.build-release-host`): it never
/// waits for a `swift build` or `swift test` holding `.build`, and it builds without swift-syntax.
/// It is rebuilt only when a source it is made of is newer than it.
enum HostBinary {
    /// Folders whose sources make up dyninka-host.
    static let sourceFolders = ["Sources/DyninkaLoop", "Sources/DyninkaHTTP", "Sources/DyninkaRoute", "Sources/DyninkaHost", "Sources/DyninkaSettings",
                                "Sources/dyninka-host", "CSupport", "Package.swift"]

    static func locate(explicit: String?) throws -> String {
        if let path = explicit ?? ProcessInfo.processInfo.environment["DYNINKA_HOST_BIN"] {
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw HostBinaryError("no executable dyninka-host at \(path) (from --host-binary or DYNINKA_HOST_BIN)")
            }
            return path
        }
        guard let root = try? AppBuilder.locateSourceRoot() else {
            let beside = LocalProgram.executableDirectory + "/dyninka-host"
            guard FileManager.default.isExecutableFile(atPath: beside) else {
                throw HostBinaryError("no dyninka-host: not beside dyninka (\(beside)) and no checkout to build it from; pass --host-binary")
            }
            note("using the dyninka-host beside dyninka (\(beside)); set DYNINKA_SOURCE_ROOT to run a release build")
            return beside
        }
        let scratch = root + "/.build-release-host"
        let binary = scratch + "/release/dyninka-host"
        if let built = modified(binary), newestSource(in: root) <= built { return binary }
        note(FileManager.default.fileExists(atPath: binary)
             ? "its sources changed: rebuilding the release dyninka-host"
             : "building a release dyninka-host in \(scratch) (once; about two minutes on two cores)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["swift", "build", "-c", "release", "--product", "dyninka-host", "--scratch-path", scratch]
        process.currentDirectoryURL = URL(fileURLWithPath: root)
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, FileManager.default.isExecutableFile(atPath: binary) else {
            FileHandle.standardError.write(text)
            throw HostBinaryError("building the release dyninka-host failed (see above); fix the build or pass --host-binary PATH")
        }
        return binary
    }

    private static func modified(_ path: String) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
    }

    /// The newest modification time of the host's sources.
    static func newestSource(in root: String) -> Date {
        var newest = Date.distantPast
        for folder in sourceFolders {
            let path = root + "/" + folder
            if let date = modified(path), date > newest { newest = date }
            guard let files = FileManager.default.enumerator(atPath: path) else { continue }
            for case let file as String in files {
                if let date = modified(path + "/" + file), date > newest { newest = date }
            }
        }
        return newest
    }
}

/// No usable dyninka-host; the message says what to do.
struct HostBinaryError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
