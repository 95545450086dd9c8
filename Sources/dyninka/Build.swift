import ArgumentParser
import DyninkaCompiler
import DyninkaRunner
import DyninkaSystem
import DyninkaTestbed
import DyninkaView
import Foundation

extension DyninkaCommand {
    /// `dyninka build FILE`: the app library and its IR.
    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compile an app file into the library dyninka-host loads.",
            discussion: """
                Prints the library's path; the IR (APP.ir.json) lies beside it. Nothing is rebuilt \
                when the file has not changed.

                Example:
                  dyninka build examples/SmartBuilding/App.swift
                """)

        @Argument(help: "The app's Swift file.")
        var file: String
        @Option(help: "Output folder (default: .dyninka/APP beside the file).")
        var out: String?

        func validate() throws {
            guard FileManager.default.fileExists(atPath: file) else { throw ValidationError("no such file: \(file)") }
        }

        func run() throws {
            let result = try buildApp(file: file, out: out)
            print(result.library)
        }
    }
}

/// Builds the app, printing warnings and progress to standard error; exits 1 on errors.
/// The options of a command that builds the app and runs it with a host: where the build goes,
/// which dyninka-host (`run`, `image`).
struct BuiltAppOptions: ParsableArguments {
    @Option(help: "Output folder of the build (default: .dyninka/APP beside the file).")
    var out: String?
    @Option(help: "The dyninka-host binary (default: $DYNINKA_HOST_BIN, else a release build of this checkout's host, built on first use).")
    var hostBinary: String?
}

func buildApp(file: String, out: String?) throws -> BuildResult {
    do {
        let builder = AppBuilder(sourceRoot: try AppBuilder.locateSourceRoot())
        let result = try builder.build(file: file, output: out) { note("\($0)") }
        for warning in result.warnings { note(warning.description) }
        return result
    } catch let failure as CompileFailure {
        note(failure.description)
        throw ExitCode(1)
    } catch let failure as BuildFailure {
        note("error: \(failure.description)")
        throw ExitCode(1)
    }
}

/// A line on standard error.
func note(_ message: String) {
    FileHandle.standardError.write(Data("dyninka: \(message)\n".utf8))
}
