import Foundation

/// What `dyninka build` produced.
package struct BuildResult: Sendable {
    /// The app library dyninka-host loads.
    package var library: String
    /// The IR, as JSON, beside the library.
    package var irPath: String
    package var ir: AppIR
    package var warnings: [Diagnostic]
    /// False when nothing changed since the last build and the library was reused.
    package var rebuilt: Bool
    /// The generated package.
    package var packageDirectory: String
}

/// A build step that failed outside the app's own code (a tool missing, swift build failing).
package struct BuildFailure: Error, CustomStringConvertible, Sendable {
    package var description: String
}

/// Turns one app file into its library: analyze, generate the package, build it in release.
package struct AppBuilder: Sendable {
    /// Where the runtime's sources are (the dyninka checkout): DyninkaRuntime, CDyninkaABI,
    /// DyninkaHTTP and the llhttp that scripts/bootstrap placed in CSupport/CLLHTTP.
    package var sourceRoot: String
    /// The swift executable used to build generated packages.
    package var swift = "swift"

    package init(sourceRoot: String) {
        self.sourceRoot = sourceRoot
    }

    /// Finds the dyninka checkout: $DYNINKA_SOURCE_ROOT, or upwards from the running executable
    /// or the current directory.
    package static func locateSourceRoot() throws(BuildFailure) -> String {
        let fm = FileManager.default
        func isRoot(_ path: String) -> Bool {
            fm.fileExists(atPath: path + "/Sources/DyninkaRuntime/ServiceCall.swift")
                && fm.fileExists(atPath: path + "/CSupport/CDyninkaABI/include/dyninka_abi.h")
        }
        if let root = ProcessInfo.processInfo.environment["DYNINKA_SOURCE_ROOT"], isRoot(root) { return root }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        for start in [executable, fm.currentDirectoryPath] {
            var url = URL(fileURLWithPath: start)
            while url.path != "/" {
                if isRoot(url.path) { return url.path }
                url.deleteLastPathComponent()
            }
        }
        throw BuildFailure(description: "cannot find the Dyninka runtime sources (Sources/DyninkaRuntime); set DYNINKA_SOURCE_ROOT to the dyninka checkout")
    }

    /// The default output folder for `file`: `.dyninka/NAME` beside it.
    package static func defaultOutput(for file: String, name: String) -> String {
        URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent(".dyninka/\(name)").path
    }

    /// Analyzes `file`, and builds its library unless the last build is still current.
    package func build(file: String, output: String?, log: (String) -> Void = { _ in }) throws -> BuildResult {
        let source: String
        do { source = try String(contentsOfFile: file, encoding: .utf8) } catch {
            throw BuildFailure(description: "cannot read '\(file)': \(error.localizedDescription)")
        }
        let analysis = try Analyzer(file: file, source: source).analyze()
        let ir = analysis.ir
        let out = output ?? Self.defaultOutput(for: file, name: ir.name)
        let package = out + "/package"
        var files: [String: String] = [
            "Package.swift": CodeGenerator.manifest(ir),
            "Sources/App/App.swift": CodeGenerator.appSource(analysis),
            "Sources/App/DyninkaGlue.swift": CodeGenerator.glueSource(ir),
        ]
        guard FileManager.default.fileExists(atPath: "\(sourceRoot)/CSupport/CLLHTTP/vendor/llhttp.c") else {
            throw BuildFailure(description: "the llhttp sources are missing from \(sourceRoot)/CSupport/CLLHTTP (the runtime's HTTP parser): run scripts/bootstrap, which fetches them")
        }
        // The runtime, with the HTTP parser its Fetch shares with the host (llhttp: its license
        // goes along).
        for (from, to) in [("Sources/DyninkaRuntime", "Runtime/DyninkaRuntime"), ("CSupport/CDyninkaABI", "Runtime/CDyninkaABI"),
                           ("Sources/DyninkaHTTP", "Runtime/DyninkaHTTP"), ("CSupport/CLLHTTP", "Runtime/CLLHTTP")] {
            for relative in try runtimeFiles(from) {
                files["\(to)/\(relative)"] = try String(contentsOfFile: "\(sourceRoot)/\(from)/\(relative)", encoding: .utf8)
            }
        }
        let fm = FileManager.default
        try Self.sync(files, into: package)
        let stamp = FNV.hex(files.keys.sorted().map { $0 + "\0" + files[$0]! }.joined(separator: "\0"))
        let library = "\(out)/lib\(ir.name).so"
        let irPath = "\(out)/\(ir.name).ir.json"
        let stampPath = "\(out)/build.stamp"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(ir).write(to: URL(fileURLWithPath: irPath))
        if (try? String(contentsOfFile: stampPath, encoding: .utf8)) == stamp, fm.fileExists(atPath: library) {
            return BuildResult(library: library, irPath: irPath, ir: ir, warnings: analysis.warnings, rebuilt: false,
                               packageDirectory: package)
        }
        log("building \(ir.name) (\(ir.services.count) services) in release")
        try runSwiftBuild(package: package, product: ir.name, file: file, log: log)
        let built = "\(package)/.build/release/lib\(ir.name).so"
        // Replace by rename: a running host keeps the library it loaded.
        let temporary = library + ".new"
        try? fm.removeItem(atPath: temporary)
        try fm.copyItem(atPath: built, toPath: temporary)
        _ = rename(temporary, library)
        try stamp.write(toFile: stampPath, atomically: true, encoding: .utf8)
        return BuildResult(library: library, irPath: irPath, ir: ir, warnings: analysis.warnings, rebuilt: true,
                           packageDirectory: package)
    }

    /// Makes `package` hold exactly `files` (relative path to content): writes what differs and
    /// removes source files (.swift, .h, .c) no longer generated, such as a runtime file that a
    /// newer dyninka renamed; a stale copy would otherwise break or silently join the next build.
    /// Returns the paths it removed.
    @discardableResult
    package static func sync(_ files: [String: String], into package: String) throws -> [String] {
        let fm = FileManager.default
        for (relative, content) in files {
            let path = "\(package)/\(relative)"
            if (try? String(contentsOfFile: path, encoding: .utf8)) == content { continue }
            try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try content.write(toFile: path, atomically: true, encoding: .utf8)
        }
        var removed: [String] = []
        for folder in ["Sources", "Runtime"] {
            guard let enumerator = fm.enumerator(atPath: "\(package)/\(folder)") else { continue }
            for case let relative as String in enumerator
            where [".swift", ".h", ".c"].contains(where: relative.hasSuffix) && files["\(folder)/\(relative)"] == nil {
                try fm.removeItem(atPath: "\(package)/\(folder)/\(relative)")
                removed.append("\(folder)/\(relative)")
            }
        }
        return removed.sorted()
    }

    private func runtimeFiles(_ folder: String) throws -> [String] {
        let base = "\(sourceRoot)/\(folder)"
        guard let enumerator = FileManager.default.enumerator(atPath: base) else {
            throw BuildFailure(description: "cannot read \(base)")
        }
        return enumerator.compactMap { $0 as? String }
            .filter { $0.hasSuffix(".swift") || $0.hasSuffix(".h") || $0.hasSuffix(".c") || $0.hasSuffix("LICENSE") }.sorted()
    }

    /// Builds the generated package in release, passing SwiftPM's progress ("[12/40] Compiling
    /// ...") to `log` as it comes, at most one line every 2 s, and the time it took at the end.
    private func runSwiftBuild(package: String, product: String, file: String, log: (String) -> Void) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [swift, "build", "-c", "release", "--package-path", package, "--product", product]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let started = Date()
        do { try process.run() } catch {
            throw BuildFailure(description: "cannot run `\(swift) build`: \(error.localizedDescription); is the Swift toolchain on PATH?")
        }
        var output = Data()
        var pending = Data()
        var lastShown: Date?
        let reader = pipe.fileHandleForReading
        while true {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            output.append(chunk)
            pending.append(chunk)
            while let newline = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                pending = Data(pending[(newline + 1)...])
                guard let step = Self.progress(line) else { continue }
                let now = Date()
                if lastShown.map({ now.timeIntervalSince($0) >= 2 }) ?? true {
                    lastShown = now
                    log(String(format: "  [%d/%d] %@ (%.0f s)", step.done, step.total, step.what, now.timeIntervalSince(started)))
                }
            }
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BuildFailure(description: "the generated package did not build:\n"
                               + Self.mapDiagnostics(String(decoding: output, as: UTF8.self), package: package, file: file))
        }
        log(String(format: "built %@ in %.1f s", product, Date().timeIntervalSince(started)))
    }

    /// SwiftPM's progress line "[12/40] Compiling X y.swift" as (12, 40, "Compiling X y.swift").
    static func progress(_ line: String) -> (done: Int, total: Int, what: String)? {
        guard line.hasPrefix("["), let close = line.firstIndex(of: "]") else { return nil }
        let numbers = line[line.index(after: line.startIndex)..<close].split(separator: "/")
        guard numbers.count == 2, let done = Int(numbers[0]), let total = Int(numbers[1]) else { return nil }
        return (done, total, line[line.index(after: close)...].trimmingCharacters(in: .whitespaces))
    }

    /// Points the Swift compiler's messages about the generated app file back at the user's file.
    static func mapDiagnostics(_ output: String, package: String, file: String) -> String {
        let generated = "\(package)/Sources/App/App.swift:"
        return output.split(separator: "\n", omittingEmptySubsequences: false).compactMap { line -> String? in
            guard line.contains(": error:") || line.contains(": warning:") || line.contains(": note:") || line.hasPrefix("error:") else { return nil }
            guard line.hasPrefix(generated) else { return String(line) }
            let rest = line.dropFirst(generated.count)
            let parts = rest.split(separator: ":", maxSplits: 1)
            guard let number = Int(parts[0]), parts.count == 2 else { return String(line) }
            return "\(file):\(number - CodeGenerator.headerLines):\(parts[1])"
        }.joined(separator: "\n")
    }
}
