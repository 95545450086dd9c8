import DyninkaSystem
import DyninkaTestbed
import Foundation
import Testing

/// The README's two commands must stop, with a non-zero exit, when a build fails: whatever the
/// failing build printed, the output filter must not turn the failure into a success.
@Suite struct ScriptTests {
    /// Runs `script` from the package root with a `swift` on PATH that fails its build after
    /// printing only progress lines (what the scripts' filters leave out).
    func runWithFailingBuild(_ script: String) throws -> (status: Int32, output: String) {
        // One folder per run: the two scripts are tested in parallel, and each removes its own.
        let fake = FileManager.default.temporaryDirectory.appendingPathComponent("dyninka-fake-swift-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: fake, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: fake) }
        let swift = fake.appendingPathComponent("swift")
        try "#!/bin/sh\necho '[1/3] Compiling DyninkaHost ServiceHost.swift'\necho '[2/3] Emitting module DyninkaHost'\nexit 1\n"
            .write(to: swift, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: swift.path)
        let process = Process()
        // Bounded: a script that went on after the failed build would run the whole suite again.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        process.arguments = ["120", "/bin/bash", script]
        process.currentDirectoryURL = URL(fileURLWithPath: root)
        var environment = ProcessInfo.processInfo.environment
        environment["DYNINKA_FUZZ_SECONDS"] = "1"  // should the build step not stop it
        environment["PATH"] = fake.path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test(arguments: ["scripts/test", "scripts/demo"])
    func aFailedBuildStopsTheScript(_ script: String) throws {
        let ran = try runWithFailingBuild(script)
        // 1 from the build step itself (124 would be the timeout: the script went on or hung).
        #expect(ran.status == 1, "\(script) did not stop at the failed build (status \(ran.status)):\n\(ran.output)")
        #expect(ran.output.contains("failed (see above)"), "\(ran.output)")
        #expect(!ran.output.contains("== testing"), "\(ran.output)")
        #expect(!ran.output.contains("== the dataflow"), "\(ran.output)")
    }
}
