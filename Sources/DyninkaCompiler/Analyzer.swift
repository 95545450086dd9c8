import SwiftParser
import SwiftSyntax

/// A text replacement in the source, by UTF-8 offsets (used to write the generated app file).
struct SourceEdit {
    var range: Range<Int>
    var replacement: String
}

/// What the analyzer learned: the IR, warnings, and the edits that turn the file into plain Swift.
package struct Analysis: Sendable {
    package var ir: AppIR
    package var warnings: [Diagnostic]
    var edits: [SourceEdit]
    /// The source text analyzed.
    package var source: String
}

extension SourceEdit: Sendable {}

/// Reads one app file with SwiftParser and builds its IR; reports every problem it can find.
package struct Analyzer {
    package let file: String
    package let source: String
    private let tree: SourceFileSyntax
    private let converter: SourceLocationConverter

    package init(file: String, source: String) {
        self.file = file
        self.source = source
        tree = Parser.parse(source: source)
        converter = SourceLocationConverter(fileName: file, tree: tree)
    }

    func location(_ node: some SyntaxProtocol) -> (line: Int, column: Int) {
        let location = node.startLocation(converter: converter)
        return (location.line, location.column)
    }

    func diagnostic(_ node: some SyntaxProtocol, _ message: String, hint: String? = nil,
                    severity: Diagnostic.Severity = .error) -> Diagnostic {
        let (line, column) = location(node)
        return Diagnostic(file: file, line: line, column: column, severity: severity, message: message, hint: hint)
    }

    /// Analyzes and checks the file. Throws `CompileFailure` listing every error found.
    package func analyze() throws(CompileFailure) -> Analysis {
        var errors: [Diagnostic] = []
        var warnings: [Diagnostic] = []
        var edits: [SourceEdit] = []

        if tree.hasError {
            let syntaxErrors = SyntaxErrorFinder(analyzer: self).find(tree)
            throw CompileFailure(diagnostics: syntaxErrors.isEmpty
                ? [Diagnostic(file: file, line: 1, column: 1, message: "the file does not parse as Swift", hint: "compile it with swiftc to see where")]
                : syntaxErrors)
        }

        let collector = DeclarationCollector(analyzer: self)
        collector.walk(tree)
        errors += collector.errors
        edits += collector.edits

        // Imports: the generated library imports the runtime instead of the SDK.
        var imports: [String] = []
        for item in tree.statements {
            guard let decl = item.item.as(ImportDeclSyntax.self) else { continue }
            let name = decl.path.map(\.name.text).joined(separator: ".")
            imports.append(name)
            if name == "Dyninka" {
                edits.append(SourceEdit(range: decl.path.position.utf8Offset..<decl.path.endPositionBeforeTrailingTrivia.utf8Offset,
                                        replacement: "DyninkaRuntime"))
            }
        }
        if !imports.contains("Dyninka") {
            warnings.append(Diagnostic(file: file, line: 1, column: 1, severity: .warning,
                                       message: "the file does not import Dyninka",
                                       hint: "add `import Dyninka` so that @Service and @Placed resolve when it runs locally"))
        }

        // Duplicate service names.
        var seen: [String: ServiceCandidate] = [:]
        for candidate in collector.services {
            if let first = seen[candidate.name] {
                errors.append(diagnostic(candidate.node.name, "duplicate service name '\(candidate.name)'",
                                         hint: "another @Service function has that name at line \(location(first.node).line); rename one: each service is a network service with its own name"))
            } else {
                seen[candidate.name] = candidate
            }
        }

        // Placement that names another service.
        for candidate in collector.services {
            if let near = candidate.ir.placement?.near, seen[near] == nil || near == candidate.name {
                errors.append(diagnostic(candidate.node.name, "service '\(candidate.name)' is placed near '\(near)', which is not another service",
                                         hint: "near: names the service to share a node with; services here: \(seen.keys.sorted().joined(separator: ", "))"))
            }
        }

        // Types and Codable.
        let typeTable = collector.typeTable()
        for candidate in collector.services {
            for (type, node) in candidate.typesUsed() where !typeTable.isCodable(type) {
                errors.append(diagnostic(node, "service '\(candidate.name)' uses '\(type)', which is not Codable",
                                         hint: "declare it as `struct \(TypeTable.base(type)): Codable { ... }`; services exchange their values as JSON"))
            }
        }

        // Placed state.
        var placed: [PlacedIR] = []
        for variable in collector.placed {
            guard seen[variable.service] != nil else {
                let known = seen.keys.sorted().joined(separator: ", ")
                errors.append(diagnostic(variable.node, "@Placed names '\(variable.service)', which is not a service",
                                         hint: known.isEmpty ? "mark the function that owns this state @Service" : "services in this file: \(known)"))
                continue
            }
            placed.append(variable.ir)
        }

        // main and its dataflow.
        var dataflow: DataflowIR?
        var appName = "App"
        if let main = collector.mainType {
            appName = main.name
            edits.append(contentsOf: main.attributeEdits)
            let extractor = DataflowExtractor(analyzer: self, services: seen)
            if let body = main.body {
                let result = extractor.extract(from: body)
                errors += result.errors
                warnings += result.warnings
                dataflow = result.dataflow
                if dataflow == nil && result.errors.isEmpty {
                    errors.append(diagnostic(main.node, "main has no chain of service calls",
                                             hint: "call the first service and chain the rest, for example `_ = try await get().filterTemperature()?.map().movingAvg()`"))
                }
            } else {
                errors.append(diagnostic(main.node, "@main type '\(main.name)' has no `static func main()`",
                                         hint: "add `static func main() async throws { ... }` with the service chain"))
            }
        } else {
            errors.append(Diagnostic(file: file, line: 1, column: 1, message: "no @main type: there is no main chain to run",
                                     hint: "add `@main struct App { static func main() async throws { _ = try await first().second() } }`"))
        }
        if collector.services.isEmpty {
            errors.append(Diagnostic(file: file, line: 1, column: 1, message: "no function is marked @Service",
                                     hint: "mark the functions of the dataflow with @Service"))
        }

        guard errors.isEmpty, let dataflow else {
            throw CompileFailure(diagnostics: errors + warnings)
        }

        // Default routes and main's arguments, from the chain.
        var routes: [String: String] = [:]
        var defaults: [String: [ArgumentIR]] = [:]
        func record(_ steps: [StepIR]) {
            for (index, step) in steps.enumerated() {
                if routes[step.service] == nil { routes[step.service] = Route.source(Array(steps[(index + 1)...])) }
                if defaults[step.service] == nil { defaults[step.service] = step.arguments }
                for argument in step.arguments { if let chain = argument.chain { record(chain) } }
            }
        }
        record(dataflow.steps)

        let services = collector.services.map { candidate -> ServiceIR in
            var ir = candidate.ir
            ir.defaultRoute = routes[candidate.name] ?? ""
            if let arguments = defaults[candidate.name] {
                for (index, argument) in arguments.enumerated() where index < ir.parameters.count {
                    ir.parameters[index].defaultArgument = argument.literal ?? Route.source(argument.chain ?? [])
                }
            }
            ir.placedState = placed.filter { $0.service == candidate.name }.map(\.name)
            ir.codeHash = candidate.hash(types: collector.typeSources, placed: placed.filter { $0.service == candidate.name }.map { collector.placedSource[$0.name] ?? "" })
            return ir
        }
        let ir = AppIR(name: appName, file: file, imports: imports, types: collector.types, services: services,
                       placed: placed, dataflow: dataflow)
        return Analysis(ir: ir, warnings: warnings, edits: edits, source: source)
    }
}

/// Finds the first syntax errors SwiftParser recovered from, with their positions.
private final class SyntaxErrorFinder: SyntaxVisitor {
    let analyzer: Analyzer
    var found: [Diagnostic] = []

    init(analyzer: Analyzer) {
        self.analyzer = analyzer
        super.init(viewMode: .all)
    }

    func find(_ tree: SourceFileSyntax) -> [Diagnostic] {
        walk(tree)
        return Array(found.prefix(5))
    }

    override func visit(_ node: TokenSyntax) -> SyntaxVisitorContinueKind {
        if node.presence == .missing {
            found.append(analyzer.diagnostic(node, "expected '\(node.text.isEmpty ? node.tokenKind.description : node.text)'",
                                             hint: "the file must be valid Swift; compile it with swiftc for details"))
        }
        return .visitChildren
    }

    override func visit(_ node: UnexpectedNodesSyntax) -> SyntaxVisitorContinueKind {
        found.append(analyzer.diagnostic(node, "unexpected code '\(node.trimmedDescription.prefix(40))'",
                                         hint: "the file must be valid Swift; compile it with swiftc for details"))
        return .skipChildren
    }
}

extension TokenKind {
    fileprivate var description: String { "\(self)" }
}
