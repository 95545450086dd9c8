import DyninkaCompiler
import Foundation
import Testing

/// The generated package holds exactly the generated files: a runtime file that a newer dyninka
/// no longer ships must not stay behind and join the next build.
@Suite struct PackageSyncTests {
    @Test func writesWhatDiffersAndRemovesWhatIsNoLongerGenerated() throws {
        let package = FileManager.default.temporaryDirectory.appendingPathComponent("dyninka-sync-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: package) }
        let first = [
            "Package.swift": "// manifest",
            "Sources/App/App.swift": "let a = 1",
            "Runtime/DyninkaRuntime/Old.swift": "let old = 1",
            "Runtime/DyninkaRuntime/Kept.swift": "let kept = 1",
            "Runtime/CDyninkaABI/include/abi.h": "// header",
        ]
        #expect(try AppBuilder.sync(first, into: package).isEmpty)
        // Files the build itself makes are left alone.
        try FileManager.default.createDirectory(atPath: package + "/.build", withIntermediateDirectories: true)
        try "built".write(toFile: package + "/.build/output.swift", atomically: true, encoding: .utf8)

        var second = first
        second["Runtime/DyninkaRuntime/Old.swift"] = nil
        second["Runtime/DyninkaRuntime/New.swift"] = "let new = 1"
        second["Sources/App/App.swift"] = "let a = 2"
        #expect(try AppBuilder.sync(second, into: package) == ["Runtime/DyninkaRuntime/Old.swift"])
        #expect(!FileManager.default.fileExists(atPath: package + "/Runtime/DyninkaRuntime/Old.swift"))
        #expect(try String(contentsOfFile: package + "/Runtime/DyninkaRuntime/New.swift", encoding: .utf8) == "let new = 1")
        #expect(try String(contentsOfFile: package + "/Sources/App/App.swift", encoding: .utf8) == "let a = 2")
        #expect(FileManager.default.fileExists(atPath: package + "/Runtime/CDyninkaABI/include/abi.h"))
        #expect(FileManager.default.fileExists(atPath: package + "/.build/output.swift"))
    }
}
