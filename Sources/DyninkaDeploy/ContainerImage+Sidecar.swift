import DyninkaSystem
import Foundation

extension ContainerImage {
    /// Where a sidecar's folder (the app's folder, without its build) lies in its image; the
    /// sidecar runs there.
    package static let sidecarFolder = "/sidecar"

    /// A sidecar's image, built as offline as the app's: the program the command starts (found on
    /// this machine's PATH), the shared libraries it loads, for a Python program the modules it
    /// imports (found by the standard library's `modulefinder`, plus what the interpreter loads at
    /// start), and the app's folder (`folder`, without `.dyninka`, Swift sources and hidden
    /// files) at `/sidecar`. `command` is the sidecar's command from `dyninka.json`; the image's
    /// entry point is its program by absolute path, so the manifests give it the arguments.
    /// Other interpreters are refused with what to do: give the sidecar an `image`.
    package static func buildSidecar(name: String, command: [String], folder: String, repository: String,
                                     output: String) throws(Failure) -> (built: Built, program: String) {
        guard let first = command.first else { throw Failure("sidecar '\(name)' has an empty command in dyninka.json") }
        var program = try locate(first, sidecar: name)
        let isPython = URL(fileURLWithPath: program).lastPathComponent.hasPrefix("python")
        if isPython {
            // The interpreter itself, not a wrapper on PATH (pyenv's shims are shell scripts).
            program = URL(fileURLWithPath: try run(program, ["-c", "import sys; print(sys.executable)"], doing: "ask \(program) where it is")
                .trimmingCharacters(in: .whitespacesAndNewlines)).resolvingSymlinksInPath().path
        }
        var entries: [TarArchive.Entry] = []
        var seen = Set<String>()
        // A file of this machine, at the same path in the image unless `at` says otherwise.
        func add(_ path: String, mode: Int = 0o644, at target: String? = nil) throws(Failure) {
            guard seen.insert(target ?? path).inserted else { return }
            let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            guard let data = FileManager.default.contents(atPath: real) else { throw Failure("cannot read \(real) (for sidecar '\(name)')") }
            entries.append(.init(path: target ?? path, kind: .file(Array(data)), mode: mode))
        }
        try add(program, mode: 0o755)
        var binaries = [program]
        if isPython {
            guard let script = command.dropFirst().first(where: { $0.hasSuffix(".py") }) else {
                throw Failure("sidecar '\(name)' runs \(first) without a .py script; give it an \"image\" in dyninka.json")
            }
            for module in try pythonModules(program, script: folder + "/" + script) {
                try add(module)
                if module.hasSuffix(".so") { binaries.append(module) }
            }
        }
        for library in try sharedLibraries(of: binaries) { try add(library, mode: 0o755) }
        for file in appFolderFiles(folder) { try add(file.source, at: sidecarFolder + "/" + file.relative) }
        entries += userEntries
        let config = ImageConfig(entrypoint: [program], command: Array(command.dropFirst()), port: nil, workingDirectory: sidecarFolder)
        return (try write(entries, config: config, repository: repository, name: "sidecar-\(name)", output: output), program)
    }

    /// `program` as an absolute path: as given, or the first match on PATH.
    static func locate(_ program: String, sidecar: String) throws(Failure) -> String {
        if program.hasPrefix("/") { return program }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(directory)/\(program)"
            if FileManager.default.isExecutableFile(atPath: path) {
                // The interpreter by its own name (python3 -> python3.11): it finds its library by it.
                return URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            }
        }
        throw Failure("sidecar '\(sidecar)' runs \(program), which is not on this machine's PATH: install it, or give the sidecar an \"image\" in dyninka.json")
    }

    /// The files of the Python modules a script needs: what the interpreter loads at start (its
    /// `os.py` is also how it finds its library) and what `modulefinder` finds the script importing.
    static func pythonModules(_ python: String, script: String) throws(Failure) -> [String] {
        let finder = """
            import sys, modulefinder, os, encodings
            paths = {getattr(m, '__file__', None) for m in list(sys.modules.values())} | {os.__file__}
            codecs = os.path.dirname(encodings.__file__)
            paths |= {os.path.join(codecs, entry) for entry in os.listdir(codecs) if entry.endswith('.py')}
            finder = modulefinder.ModuleFinder()
            finder.run_script(sys.argv[1])
            paths |= {m.__file__ for m in finder.modules.values()}
            for p in sorted(p for p in paths if p and os.path.isabs(p) and os.path.exists(p)): print(p)
            """
        let output = try run(python, ["-c", finder, script], doing: "find the modules \(script) imports")
        let script = URL(fileURLWithPath: script).standardizedFileURL.path
        return output.split(separator: "\n").map(String.init).filter { $0 != script && !$0.contains("/site-packages/") && !$0.contains("/dist-packages/") }
    }

    /// The app folder's files a sidecar may read: everything but the build, Swift sources,
    /// dyninka.json and hidden files; by path relative to the folder, sorted.
    static func appFolderFiles(_ folder: String) -> [(source: String, relative: String)] {
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return [] }
        var files: [(String, String)] = []
        for case let relative as String in walker {
            let parts = relative.split(separator: "/")
            if parts.contains(where: { $0.hasPrefix(".") }) { continue }
            if relative.hasSuffix(".swift") || relative == "dyninka.json" { continue }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder + "/" + relative, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            files.append((folder + "/" + relative, relative))
        }
        return files.sorted { $0.1 < $1.1 }
    }
}
