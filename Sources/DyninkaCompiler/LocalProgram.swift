import Foundation

/// Compiles the app file as the ordinary program it is (with the SDK's macros, debug), the way
/// users test their logic without any network.
package struct LocalProgram: Sendable {
    /// The build folder holding libDyninka.so, Modules/ and the macro plugin (beside `dyninka`).
    package var sdkDirectory: String
    package var sourceRoot: String

    package init(sdkDirectory: String, sourceRoot: String) {
        self.sdkDirectory = sdkDirectory
        self.sourceRoot = sourceRoot
    }

    /// The folder of the running executable.
    package static var executableDirectory: String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().path
    }

    /// Compiles `file` to `output`; compiler messages go to standard error.
    package func compile(file: String, moduleName: String, output: String) throws {
        let fm = FileManager.default
        let sdk = sdkDirectory
        for needed in ["libDyninka.so", "Modules/Dyninka.swiftmodule", "DyninkaMacros-tool"] where !fm.fileExists(atPath: "\(sdk)/\(needed)") {
            throw BuildFailure(description: "the Dyninka SDK is not built in \(sdk) (missing \(needed)); run `swift build --product Dyninka` in the dyninka checkout")
        }
        try fm.createDirectory(atPath: (output as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "swiftc", "-swift-version", "6", "-parse-as-library", "-module-name", moduleName, file,
            "-I", "\(sdk)/Modules", "-L", sdk, "-lDyninka", "-Xlinker", "-rpath", "-Xlinker", sdk,
            "-Xcc", "-fmodule-map-file=\(sdk)/CDyninkaABI.build/module.modulemap",
            "-Xcc", "-I\(sourceRoot)/CSupport/CDyninkaABI/include",
            // The runtime's Fetch parses with llhttp (through DyninkaHTTP), whose module the
            // compiler loads too.
            "-Xcc", "-fmodule-map-file=\(sdk)/CLLHTTP.build/module.modulemap",
            "-Xcc", "-I\(sourceRoot)/CSupport/CLLHTTP/include",
            "-load-plugin-executable", "\(sdk)/DyninkaMacros-tool#DyninkaMacros",
            "-o", output,
        ]
        process.standardError = FileHandle.standardError
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BuildFailure(description: "\(file) does not compile as a local program (messages above)")
        }
    }
}
