import ArgumentParser
import DyninkaCompiler
import DyninkaRunner
import DyninkaSystem
import DyninkaTestbed
import DyninkaView
import Foundation

extension DyninkaCommand {
    /// `dyninka graph FILE`: the dataflow as a picture.
    struct Graph: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the dataflow of main as Mermaid, Graphviz dot or JSON.",
            discussion: """
                Example:
                  dyninka graph examples/SmartBuilding/App.swift --format dot | dot -Tpng > flow.png
                """)

        @Argument(help: "The app's Swift file.")
        var file: String
        @Option(help: "mermaid, dot or json (default mermaid).")
        var format: String = "mermaid"

        func validate() throws {
            guard FileManager.default.fileExists(atPath: file) else { throw ValidationError("no such file: \(file)") }
            guard DataflowGraph.Format(rawValue: format) != nil else { throw ValidationError("--format must be mermaid, dot or json") }
        }

        func run() throws {
            let source = try String(contentsOfFile: file, encoding: .utf8)
            do {
                let analysis = try Analyzer(file: file, source: source).analyze()
                print(DataflowGraph.render(analysis.ir, format: DataflowGraph.Format(rawValue: format)!), terminator: "")
            } catch {
                note(error.description)
                throw ExitCode(1)
            }
        }
    }
}
