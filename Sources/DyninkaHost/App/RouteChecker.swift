import DyninkaRoute
/// How the host produces one argument of a call.
package enum ArgumentPlan: Sendable {
    /// A constant: these JSON bytes.
    case constant(String)
    /// A dependency: run this chain (fan-in); its result is the argument.
    case chain(CheckedRoute, optional: Bool)
}

/// One step of a checked route: the service and how to produce its explicit arguments.
package struct CheckedStep: Sendable {
    package var service: ServiceDescriptor
    package var call: RouteCall
    package var arguments: [ArgumentPlan]
}

/// A route whose names exist and whose types line up; ready to run.
package struct CheckedRoute: Sendable {
    package var chain: RouteChain
    package var steps: [CheckedStep]

    package var isEmpty: Bool { steps.isEmpty }
    /// Type of what the route produces, when it has steps.
    package var outputType: String? { steps.last?.service.outputType }
}

/// Checks routes against a service table before any work is done.
package struct RouteChecker {
    package let table: ServiceTable
    /// The most service calls one route may make, nested arguments included.
    package var maxHops = 64

    package init(table: ServiceTable, maxHops: Int = 64) {
        self.table = table
        self.maxHops = maxHops
    }

    /// Checks `chain` as what follows `previous` (nil: the chain must start from a global service).
    package func check(_ chain: RouteChain, after previous: ServiceDescriptor?) throws(RouteError) -> CheckedRoute {
        let hops = chain.callCount
        guard hops <= maxHops else {
            throw RouteError("route makes \(hops) service calls; the limit is \(maxHops)")
        }
        return try checkChain(chain, inputType: previous?.outputType, from: previous?.name)
    }

    /// Plans the explicit arguments of `service`: from `arguments` when given (a Dyninka-Args
    /// header or a route step), else from main's defaults.
    package func checkArguments(_ arguments: [RouteArgument]?, of service: ServiceDescriptor,
                                allowMissing: Bool = false) throws(RouteError) -> [ArgumentPlan] {
        let given: [RouteArgument]
        if let arguments {
            given = arguments
        } else {
            given = service.parameters.compactMap { p in p.defaultArgument.map { RouteArgument(label: p.label, value: $0) } }
            if given.count != service.parameters.count {
                if allowMissing { return [] }
                let missing = service.parameters.filter { $0.defaultArgument == nil }.map(\.label)
                throw RouteError("'\(service.name)' needs argument(s) \(missing.map { "'\($0)'" }.joined(separator: ", ")); main gives none, so pass them (Dyninka-Args: \(missing.map { "\($0): ..." }.joined(separator: ", ")))")
            }
        }
        guard given.count == service.parameters.count else {
            throw RouteError("'\(service.name)' takes \(service.parameters.count) argument(s) (\(signature(service))) but \(given.count) were given")
        }
        var plans: [ArgumentPlan] = []
        for (parameter, argument) in zip(service.parameters, given) {
            let expected = parameter.label == "_" ? nil : parameter.label
            guard argument.label == expected else {
                throw RouteError("argument of '\(service.name)' is labeled '\(argument.label ?? "_")' but the parameter is '\(parameter.label)' (\(signature(service)))")
            }
            switch argument.value {
            case .literal(let literal):
                guard literalFits(literal, parameter) else {
                    throw RouteError("'\(literal.source)' cannot be passed as '\(parameter.label)' of '\(service.name)', which is \(parameter.type)\(parameter.optional ? "?" : "")")
                }
                plans.append(.constant(literal.json))
            case .chain(let chain):
                guard let first = chain.calls.first, let firstService = table[first.name] else {
                    throw RouteError("unknown service '\(chain.calls.first?.name ?? "")' in the arguments of '\(service.name)'")
                }
                guard firstService.inputType == nil else {
                    throw RouteError("'\(first.name)' takes a \(firstService.inputType!) as input, so it cannot start the chain given as '\(parameter.label)' of '\(service.name)'")
                }
                let checked = try checkChain(chain, inputType: nil, from: nil)
                let produced = checked.steps.last!.service.outputType
                guard typeFits(produced, into: parameter.type) else {
                    throw RouteError("'\(chain.source)' produces \(produced) but '\(parameter.label)' of '\(service.name)' is \(parameter.type)")
                }
                plans.append(.chain(checked, optional: parameter.optional))
            }
        }
        return plans
    }

    private func checkChain(_ chain: RouteChain, inputType: String?, from previous: String?) throws(RouteError) -> CheckedRoute {
        var current = inputType
        var previousName = previous
        var steps: [CheckedStep] = []
        for (index, call) in chain.calls.enumerated() {
            guard let service = table[call.name] else {
                throw RouteError("unknown service '\(call.name)'; this app has \(table.services.map(\.name).joined(separator: ", "))")
            }
            if let needed = service.inputType {
                guard let current else {
                    throw RouteError("'\(call.name)' is a method of \(needed) and needs a receiver; it cannot start a chain")
                }
                guard typeFits(current, into: needed) else {
                    throw RouteError("'\(call.name)' takes \(needed) but receives \(current) from '\(previousName ?? "the request")'")
                }
            } else if index > 0 || current != nil {
                throw RouteError("'\(call.name)' is a global function without a receiver; it can only start a chain, not follow '\(previousName ?? "")'")
            }
            let arguments = try checkArguments(call.arguments, of: service)
            steps.append(CheckedStep(service: service, call: call, arguments: arguments))
            current = service.outputType
            previousName = service.name
        }
        return CheckedRoute(chain: chain, steps: steps)
    }

    private func typeFits(_ produced: String, into expected: String) -> Bool {
        produced == expected || expected == "RawJSON" || produced == "RawJSON"
    }

    private func literalFits(_ literal: RouteLiteral, _ parameter: ServiceParameter) -> Bool {
        let type = parameter.type
        if type == "RawJSON" { return true }
        switch literal {
        case .null: return parameter.optional
        case .bool: return type == "Bool"
        case .string: return type == "String"
        case .double: return ["Double", "Float", "CGFloat", "Float32", "Float64"].contains(type)
        case .int: return ["Int", "Int8", "Int16", "Int32", "Int64", "UInt", "UInt8", "UInt16", "UInt32", "UInt64",
                           "Double", "Float", "Float32", "Float64"].contains(type)
        }
    }

    private func signature(_ service: ServiceDescriptor) -> String {
        "\(service.name)(\(service.parameters.map { "\($0.label): \($0.type)\($0.optional ? "?" : "")" }.joined(separator: ", ")))"
    }
}
