import DyninkaCompiler
import DyninkaRoute
import Foundation
import Testing

/// The package root, found from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// Compares `actual` with the golden file; DYNINKA_UPDATE_GOLDEN=1 rewrites it instead.
func expectGolden(_ actual: String, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let path = "\(packageRoot)/Tests/DyninkaCompilerTests/Golden/\(name)"
    if ProcessInfo.processInfo.environment["DYNINKA_UPDATE_GOLDEN"] == "1" {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try actual.write(toFile: path, atomically: true, encoding: .utf8)
        return
    }
    let expected = try String(contentsOfFile: path, encoding: .utf8)
    #expect(actual == expected, "\(name) differs from its golden file; if the change is intended, run with DYNINKA_UPDATE_GOLDEN=1",
            sourceLocation: sourceLocation)
}

func analyze(example: String) throws -> Analysis {
    let file = "examples/\(example)/App.swift"
    let source = try String(contentsOfFile: "\(packageRoot)/\(file)", encoding: .utf8)
    return try Analyzer(file: file, source: source).analyze()
}

@Suite struct GoldenTests {
    @Test(arguments: ["SmartBuilding", "BuildingAlerts"])
    func irAndGeneratedCodeMatchTheGoldenFiles(_ example: String) throws {
        let analysis = try analyze(example: example)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try expectGolden(String(decoding: try encoder.encode(analysis.ir), as: UTF8.self) + "\n", "\(example)/ir.json")
        try expectGolden(CodeGenerator.appSource(analysis), "\(example)/App.swift.txt")
        try expectGolden(CodeGenerator.glueSource(analysis.ir), "\(example)/DyninkaGlue.swift.txt")
        try expectGolden(CodeGenerator.manifest(analysis.ir), "\(example)/Package.swift.txt")
        try expectGolden(DataflowGraph.render(analysis.ir, format: .mermaid), "\(example)/graph.mmd")
        try expectGolden(DataflowGraph.render(analysis.ir, format: .dot), "\(example)/graph.dot")
    }

    @Test func smartBuildingIRHasThePapersChain() throws {
        let ir = try analyze(example: "SmartBuilding").ir
        #expect(ir.name == "SmartBuilding")
        #expect(ir.dataflow.entry == "get")
        #expect(!ir.dataflow.startsFromValue)
        #expect(Route.source(ir.dataflow.steps) == "get().filterTemperature()?.map().movingAvg()")
        #expect(ir.service("get")?.defaultRoute == "filterTemperature()?.map().movingAvg()")
        #expect(ir.service("get")?.isAsync == true)
        #expect(ir.service("filterTemperature")?.outputOptional == true)
        #expect(ir.service("movingAvg")?.placedState == ["count", "average"])
        #expect(ir.placed.map(\.type) == ["Int", "Double"])
    }

    @Test func buildingAlertsIRHasFanInAndAConstant() throws {
        let ir = try analyze(example: "BuildingAlerts").ir
        #expect(ir.dataflow.startsFromValue)
        #expect(ir.dataflow.entry == "validate")
        let assess = try #require(ir.service("assess"))
        #expect(assess.parameters.map(\.defaultArgument) == ["weather()", "26.0"])
        #expect(assess.defaultRoute == "alert()")
        #expect(ir.service("validate")?.defaultRoute == "assess(weather: weather(), threshold: 26.0).alert()")
        #expect(ir.service("validate")?.isThrowing == true)
    }

    @Test(arguments: ["SmartBuilding", "BuildingAlerts"])
    func printedRoutesAreWhatTheHostParses(_ example: String) throws {
        let ir = try analyze(example: example).ir
        for service in ir.services {
            let chain = try RouteParser().parseChain(service.defaultRoute)
            #expect(chain.source == service.defaultRoute, "\(service.name)")
            for parameter in service.parameters {
                if let argument = parameter.defaultArgument {
                    #expect(try RouteParser().parseArguments(argument).count == 1, "\(service.name).\(parameter.label)")
                }
            }
        }
        let quoted = "a \"b\" \\ \u{0} \u{7f} ☀️"
        let parsed = try RouteParser().parseChain("f(s: \(RouteLiteral.swiftQuote(quoted)))")
        #expect(parsed.calls[0].arguments[0].value == .literal(.string(quoted)))
    }

    @Test func generatedAppKeepsLineNumbers() throws {
        let analysis = try analyze(example: "SmartBuilding")
        let original = analysis.source.split(separator: "\n", omittingEmptySubsequences: false)
        let generated = CodeGenerator.appSource(analysis).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(generated.count == original.count + CodeGenerator.headerLines)
        // Every line that had no attribute is unchanged, at the same line number.
        for (index, line) in original.enumerated() where !line.contains("@") && !line.hasPrefix("import Dyninka") {
            #expect(generated[index + CodeGenerator.headerLines] == line, "line \(index + 1)")
        }
    }

    @Test func editingOneFunctionChangesOnlyItsHash() throws {
        let file = "examples/SmartBuilding/App.swift"
        let source = try String(contentsOfFile: "\(packageRoot)/\(file)", encoding: .utf8)
        let before = try Analyzer(file: file, source: source).analyze().ir
        let edited = source.replacingOccurrences(of: "Temperature(value: value)", with: "Temperature(value: value * 1.0)")
        #expect(edited != source)
        let after = try Analyzer(file: file, source: edited).analyze().ir
        let changed = zip(before.services, after.services).filter { $0.codeHash != $1.codeHash }.map(\.0.name)
        #expect(changed == ["map"])
    }
}
