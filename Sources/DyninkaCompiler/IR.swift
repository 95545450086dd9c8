/// The intermediate representation of a Dyninka app: everything the compiler learned from the
/// file, written as JSON beside the built library (`APP.ir.json`).
package struct AppIR: Codable, Equatable, Sendable {
    /// The app's name: the `@main` type's name.
    package var name: String
    /// The source file, as given.
    package var file: String
    package var imports: [String]
    package var types: [TypeIR]
    package var services: [ServiceIR]
    package var placed: [PlacedIR]
    package var dataflow: DataflowIR

    /// The service named `name`.
    package func service(_ name: String) -> ServiceIR? { services.first { $0.name == name } }
}

/// A type declared in the file.
package struct TypeIR: Codable, Equatable, Sendable {
    package var name: String
    /// struct, class, enum or actor.
    package var kind: String
    package var conformances: [String]
    package var isCodable: Bool
    package var line: Int
}

/// An explicit parameter of a service.
package struct ParameterIR: Codable, Equatable, Sendable {
    /// The argument label at call sites ("_" when none).
    package var label: String
    /// The name inside the function.
    package var name: String
    package var type: String
    /// What main passes, in route syntax ("weather()", "30"); nil when main gives nothing.
    package var defaultArgument: String?
}

/// A function marked @Service.
package struct ServiceIR: Codable, Equatable, Sendable {
    package var name: String
    /// The extended type whose value is the implicit input; nil for a global function.
    package var receiver: String?
    package var parameters: [ParameterIR]
    /// The output type without the Optional mark.
    package var output: String
    /// Returns an Optional: nil drops the item.
    package var outputOptional: Bool
    package var isAsync: Bool
    package var isThrowing: Bool
    /// @Placed variables this service owns.
    package var placedState: [String]
    /// What follows this service in main's chain, in route syntax.
    package var defaultRoute: String
    /// Where it should run when deployed beyond one machine (from `@Service(node:label:near:)`).
    package var placement: PlacementIR?
    /// Hash of the function's code, the declarations of its types and its placed state: what
    /// decides whether a redeploy must roll this service.
    package var codeHash: String
    package var line: Int
    package var column: Int
    /// `@Service(isolated: true)`: never fused with another service (nil: it may be).
    package var isolated: Bool?
}

/// A service's placement specification.
package struct PlacementIR: Codable, Equatable, Sendable {
    /// Pin to this node.
    package var node: String?
    /// Only nodes with this label ("key=value").
    package var label: String?
    /// On the same node as this service.
    package var near: String?

    package init(node: String? = nil, label: String? = nil, near: String? = nil) {
        self.node = node
        self.label = label
        self.near = near
    }

    /// The table's placement string: "node=edge-1;label=zone=factory;near=movingAvg".
    package var tableString: String {
        [node.map { "node=\($0)" }, label.map { "label=\($0)" }, near.map { "near=\($0)" }].compactMap { $0 }.joined(separator: ";")
    }
}

/// A global variable marked @Placed("service").
package struct PlacedIR: Codable, Equatable, Sendable {
    package var name: String
    package var service: String
    /// Declared or inferred from a literal initializer; nil when neither.
    package var type: String?
    package var initializer: String
    package var line: Int
}

/// One call in a chain.
package struct StepIR: Codable, Equatable, Sendable {
    package var service: String
    /// Written with `?.` before it.
    package var optionalChained: Bool
    package var arguments: [ArgumentIR]
}

/// An argument of a call in main's chain.
package struct ArgumentIR: Codable, Equatable, Sendable {
    package var label: String?
    /// A literal constant, in Swift syntax (nil when the argument is a chain).
    package var literal: String?
    /// A chain of service calls whose result is the argument (fan-in).
    package var chain: [StepIR]?
}

/// The dataflow of main: the default route.
package struct DataflowIR: Codable, Equatable, Sendable {
    /// The service a client posts to.
    package var entry: String
    /// The chain starts from a local value (`reading.filterTemperature()...`): the entry
    /// service's input comes from the request body.
    package var startsFromValue: Bool
    package var steps: [StepIR]
}

extension StepIR {
    /// This call in route syntax: `alert(conditions: weather())`.
    package var source: String {
        let args = arguments.map { argument -> String in
            let value = argument.literal ?? Route.source(argument.chain ?? [])
            return argument.label.map { "\($0): \(value)" } ?? value
        }
        return "\(service)(\(args.joined(separator: ", ")))"
    }
}

/// Printing chains in the route syntax the host parses.
package enum Route {
    /// Steps joined as Swift would write them: `filterTemperature()?.map().movingAvg()`.
    package static func source(_ steps: [StepIR]) -> String {
        var text = ""
        for (index, step) in steps.enumerated() {
            if index > 0 { text += step.optionalChained ? "?." : "." }
            text += step.source
        }
        return text
    }
}

extension AppIR {
    /// Hash of the declarations (name, type, initial value) of the @Placed state `service` owns;
    /// "" when it owns none.
    package func stateHash(of service: ServiceIR) -> String {
        let declarations = placed.filter { $0.service == service.name }.sorted { $0.name < $1.name }
        guard !declarations.isEmpty else { return "" }
        return FNV.hex(declarations.map { "\($0.name): \($0.type ?? "?") = \($0.initializer)" }.joined(separator: "\n"))
    }
}
