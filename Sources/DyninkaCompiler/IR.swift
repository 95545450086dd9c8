/// The intermediate representation of a Dyninka app: everything the compiler learned from the
/// file, written as JSON beside the built library (`APP.ir.json`).
public struct AppIR: Codable, Equatable, Sendable {
    /// The app's name: the `@main` type's name.
    public var name: String
    /// The source file, as given.
    public var file: String
    public var imports: [String]
    public var types: [TypeIR]
    public var services: [ServiceIR]
    public var placed: [PlacedIR]
    public var dataflow: DataflowIR

    /// The service named `name`.
    public func service(_ name: String) -> ServiceIR? { services.first { $0.name == name } }
}

/// A type declared in the file.
public struct TypeIR: Codable, Equatable, Sendable {
    public var name: String
    /// struct, class, enum or actor.
    public var kind: String
    public var conformances: [String]
    public var isCodable: Bool
    public var line: Int
}

/// An explicit parameter of a service.
public struct ParameterIR: Codable, Equatable, Sendable {
    /// The argument label at call sites ("_" when none).
    public var label: String
    /// The name inside the function.
    public var name: String
    public var type: String
    /// What main passes, in route syntax ("weather()", "30"); nil when main gives nothing.
    public var defaultArgument: String?
}

/// A function marked @Service.
public struct ServiceIR: Codable, Equatable, Sendable {
    public var name: String
    /// The extended type whose value is the implicit input; nil for a global function.
    public var receiver: String?
    public var parameters: [ParameterIR]
    /// The output type without the Optional mark.
    public var output: String
    /// Returns an Optional: nil drops the item.
    public var outputOptional: Bool
    public var isAsync: Bool
    public var isThrowing: Bool
    /// @Placed variables this service owns.
    public var placedState: [String]
    /// What follows this service in main's chain, in route syntax.
    public var defaultRoute: String
    /// Where it should run when deployed beyond one machine (from `@Service(node:label:near:)`).
    public var placement: PlacementIR?
    /// Hash of the function's code, the declarations of its types and its placed state: what
    /// decides whether a redeploy must roll this service.
    public var codeHash: String
    public var line: Int
    public var column: Int
}

/// A service's placement specification.
public struct PlacementIR: Codable, Equatable, Sendable {
    /// Pin to this node.
    public var node: String?
    /// Only nodes with this label ("key=value").
    public var label: String?
    /// On the same node as this service.
    public var near: String?

    public init(node: String? = nil, label: String? = nil, near: String? = nil) {
        self.node = node
        self.label = label
        self.near = near
    }

    /// The table's placement string: "node=edge-1;label=zone=factory;near=movingAvg".
    public var tableString: String {
        [node.map { "node=\($0)" }, label.map { "label=\($0)" }, near.map { "near=\($0)" }].compactMap { $0 }.joined(separator: ";")
    }
}

/// A global variable marked @Placed("service").
public struct PlacedIR: Codable, Equatable, Sendable {
    public var name: String
    public var service: String
    /// Declared or inferred from a literal initializer; nil when neither.
    public var type: String?
    public var initializer: String
    public var line: Int
}

/// One call in a chain.
public struct StepIR: Codable, Equatable, Sendable {
    public var service: String
    /// Written with `?.` before it.
    public var optionalChained: Bool
    public var arguments: [ArgumentIR]
}

/// An argument of a call in main's chain.
public struct ArgumentIR: Codable, Equatable, Sendable {
    public var label: String?
    /// A literal constant, in Swift syntax (nil when the argument is a chain).
    public var literal: String?
    /// A chain of service calls whose result is the argument (fan-in).
    public var chain: [StepIR]?
}

/// The dataflow of main: the default route.
public struct DataflowIR: Codable, Equatable, Sendable {
    /// The service a client posts to.
    public var entry: String
    /// The chain starts from a local value (`reading.filterTemperature()...`): the entry
    /// service's input comes from the request body.
    public var startsFromValue: Bool
    public var steps: [StepIR]
}

extension StepIR {
    /// This call in route syntax: `alert(conditions: weather())`.
    public var source: String {
        let args = arguments.map { argument -> String in
            let value = argument.literal ?? Route.source(argument.chain ?? [])
            return argument.label.map { "\($0): \(value)" } ?? value
        }
        return "\(service)(\(args.joined(separator: ", ")))"
    }
}

/// Printing chains in the route syntax the host parses.
public enum Route {
    /// Steps joined as Swift would write them: `filterTemperature()?.map().movingAvg()`.
    public static func source(_ steps: [StepIR]) -> String {
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
    public func stateHash(of service: ServiceIR) -> String {
        let declarations = placed.filter { $0.service == service.name }.sorted { $0.name < $1.name }
        guard !declarations.isEmpty else { return "" }
        return FNV.hex(declarations.map { "\($0.name): \($0.type ?? "?") = \($0.initializer)" }.joined(separator: "\n"))
    }
}
