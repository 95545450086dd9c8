import DyninkaRoute
import SwiftSyntax

/// Finds the chains of service calls in main and checks that their types line up.
struct DataflowExtractor {
    let analyzer: Analyzer
    let services: [String: ServiceCandidate]

    struct Result {
        var dataflow: DataflowIR?
        var errors: [Diagnostic] = []
        var warnings: [Diagnostic] = []
    }

    /// One call as written, before checking.
    struct Call {
        var name: String
        var node: FunctionCallExprSyntax
        var optionalChained: Bool
    }

    func extract(from body: CodeBlockSyntax) -> Result {
        var result = Result()
        let finder = ChainFinder(services: services)
        finder.walk(body)
        guard let first = finder.chains.first else { return result }
        for extra in finder.chains.dropFirst() {
            result.warnings.append(analyzer.diagnostic(extra, "main has more than one service chain; the first (line \(analyzer.location(first).line)) is the default dataflow",
                                                       hint: "other chains can be sent as custom routes (Dyninka-Route header)", severity: .warning))
        }
        do {
            let (steps, startsFromValue) = try chain(first, depth: 0)
            result.dataflow = DataflowIR(entry: steps[0].service, startsFromValue: startsFromValue, steps: steps)
        } catch {
            result.errors.append(error)
        }
        return result
    }

    /// Flattens `a().b()?.c()` into its calls and whatever value it starts from.
    static func flatten(_ expression: ExprSyntax) -> (base: ExprSyntax?, calls: [Call]) {
        var expression = expression
        while true {
            if let e = expression.as(TryExprSyntax.self) { expression = e.expression; continue }
            if let e = expression.as(AwaitExprSyntax.self) { expression = e.expression; continue }
            if let e = expression.as(ForceUnwrapExprSyntax.self) { expression = e.expression; continue }
            break
        }
        guard let call = expression.as(FunctionCallExprSyntax.self) else { return (expression, []) }
        if let reference = call.calledExpression.as(DeclReferenceExprSyntax.self) {
            return (nil, [Call(name: reference.baseName.text, node: call, optionalChained: false)])
        }
        if let member = call.calledExpression.as(MemberAccessExprSyntax.self), let base = member.base {
            var optional = false
            var inner = base
            if let chained = base.as(OptionalChainingExprSyntax.self) {
                optional = true
                inner = chained.expression
            }
            var (root, calls) = flatten(inner)
            if calls.isEmpty, root != nil {
                // A local value (or a non-call expression) starts the chain.
                return (root, [Call(name: member.declName.baseName.text, node: call, optionalChained: optional)])
            }
            calls.append(Call(name: member.declName.baseName.text, node: call, optionalChained: optional))
            return (root, calls)
        }
        return (expression, [])
    }

    /// Checks a chain and turns it into steps; the first error found is thrown.
    private func chain(_ node: FunctionCallExprSyntax, depth: Int) throws(Diagnostic) -> ([StepIR], Bool) {
        let (base, written) = Self.flatten(ExprSyntax(node))
        // Leading calls that are not services (an initializer, a helper) form the starting value.
        guard let firstService = written.firstIndex(where: { services[$0.name] != nil }) else {
            throw analyzer.diagnostic(node, "no service in this chain")
        }
        let calls = Array(written[firstService...])
        let startsFromValue = base != nil || firstService > 0
        var steps: [StepIR] = []
        var current: (type: String, optional: Bool, from: String)?
        for (index, call) in calls.enumerated() {
            guard let service = services[call.name] else {
                let known = services.keys.sorted().joined(separator: ", ")
                throw analyzer.diagnostic(call.node, "'\(call.name)' is called in the dataflow but is not a service",
                                          hint: "mark '\(call.name)' @Service, or keep it out of main's chain (services here: \(known))")
            }
            if index == 0 && !startsFromValue {
                if let receiver = service.receiver {
                    throw analyzer.diagnostic(call.node, "'\(call.name)' is a method of \(receiver) and cannot start the chain without a value",
                                              hint: "start from a value, `value.\(call.name)()`, or from a global service")
                }
            } else if index > 0 {
                guard let receiver = service.receiver else {
                    throw analyzer.diagnostic(call.node, "'\(call.name)' is a global function and cannot follow '\(current!.from)'",
                                              hint: "make it a method in `extension \(current!.type)` so that it receives the previous output")
                }
                if let current, receiver != current.type && receiver != "RawJSON" && current.type != "RawJSON" {
                    throw analyzer.diagnostic(call.node, "'\(call.name)' takes \(receiver) but '\(current.from)' returns \(current.type)\(current.optional ? "?" : "")",
                                              hint: "the output of each service is the input of the next: declare '\(call.name)' in `extension \(current.type)` or change what '\(current.from)' returns")
                }
            }
            steps.append(StepIR(service: call.name, optionalChained: call.optionalChained,
                                arguments: try arguments(of: call, service: service, depth: depth)))
            current = (service.ir.output, service.ir.outputOptional, call.name)
        }
        return (steps, startsFromValue)
    }

    private func arguments(of call: Call, service: ServiceCandidate, depth: Int) throws(Diagnostic) -> [ArgumentIR] {
        let given = Array(call.node.arguments)
        let parameters = service.ir.parameters
        guard given.count == parameters.count else {
            throw analyzer.diagnostic(call.node, "'\(call.name)' takes \(parameters.count) argument(s) but \(given.count) are passed")
        }
        var arguments: [ArgumentIR] = []
        for (argument, parameter) in zip(given, parameters) {
            let label = argument.label?.text
            if let literal = Self.literal(argument.expression) {
                arguments.append(ArgumentIR(label: label, literal: literal, chain: nil))
                continue
            }
            guard depth < 8, let inner = Self.innermostCall(argument.expression),
                  Self.flatten(ExprSyntax(inner)).calls.contains(where: { services[$0.name] != nil }) else {
                throw analyzer.diagnostic(argument.expression, "argument '\(parameter.label)' of '\(call.name)' must be a literal or a service call",
                                          hint: "explicit arguments in main are constants (literals) or dependencies (service calls, run before '\(call.name)')")
            }
            let (steps, fromValue) = try chain(inner, depth: depth + 1)
            if fromValue {
                throw analyzer.diagnostic(argument.expression, "the dependency '\(parameter.label)' of '\(call.name)' must start from a global service",
                                          hint: "a dependency is called with no input: start it with a service that takes none")
            }
            let produced = services[steps.last!.service]!.ir.output
            let expected = parameter.type.hasSuffix("?") ? String(parameter.type.dropLast()) : parameter.type
            if produced != expected && expected != "RawJSON" && produced != "RawJSON" {
                throw analyzer.diagnostic(argument.expression, "'\(parameter.label)' of '\(call.name)' is \(parameter.type) but '\(Route.source(steps))' returns \(produced)",
                                          hint: "pass a chain that returns \(parameter.type)")
            }
            arguments.append(ArgumentIR(label: label, literal: nil, chain: steps))
        }
        return arguments
    }

    private static func innermostCall(_ expression: ExprSyntax) -> FunctionCallExprSyntax? {
        var expression = expression
        while true {
            if let e = expression.as(TryExprSyntax.self) { expression = e.expression; continue }
            if let e = expression.as(AwaitExprSyntax.self) { expression = e.expression; continue }
            break
        }
        return expression.as(FunctionCallExprSyntax.self)
    }

    /// A literal argument in route syntax, or nil when the expression is not a literal.
    static func literal(_ expression: ExprSyntax) -> String? {
        if let prefix = expression.as(PrefixOperatorExprSyntax.self), prefix.operator.text == "-",
           let inner = literal(prefix.expression), inner.first?.isNumber == true {
            return "-" + inner
        }
        if let e = expression.as(IntegerLiteralExprSyntax.self) { return e.literal.text.filter { $0 != "_" } }
        if let e = expression.as(FloatLiteralExprSyntax.self) { return e.literal.text.filter { $0 != "_" } }
        if let e = expression.as(BooleanLiteralExprSyntax.self) { return e.literal.text }
        if expression.is(NilLiteralExprSyntax.self) { return "nil" }
        if let e = expression.as(StringLiteralExprSyntax.self), let value = e.representedLiteralValue { return quote(value) }
        return nil
    }

    /// A Swift string literal, escaped exactly as the host's route parser reads it back.
    static func quote(_ s: String) -> String { RouteLiteral.swiftQuote(s) }
}

/// Finds the outermost calls in main that involve a service.
private final class ChainFinder: SyntaxVisitor {
    let services: [String: ServiceCandidate]
    var chains: [FunctionCallExprSyntax] = []

    init(services: [String: ServiceCandidate]) {
        self.services = services
        super.init(viewMode: .sourceAccurate)
    }

    override func visit(_ node: FunctionCallExprSyntax) -> SyntaxVisitorContinueKind {
        let (_, calls) = DataflowExtractor.flatten(ExprSyntax(node))
        if calls.contains(where: { services[$0.name] != nil }) {
            chains.append(node)
            return .skipChildren
        }
        return .visitChildren
    }

    // Closures in main are not part of the dataflow.
    override func visit(_ node: ClosureExprSyntax) -> SyntaxVisitorContinueKind { .skipChildren }
}
