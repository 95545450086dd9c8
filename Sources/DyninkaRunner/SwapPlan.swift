import DyninkaCompiler
import DyninkaRoute

/// What a saved edit of the app changes in the running app (`dyninka run --watch`): which
/// services start, which are swapped for new code, which take main's new chain without a
/// restart, and which stop. Made from the two IRs alone, so a unit test can check it.
package struct SwapPlan: Equatable, Sendable {
    /// Services the file gained, and lost.
    package var added: [String]
    package var removed: [String]
    /// Services to swap: their code hash changed, or their route or arguments now call an added
    /// service (a running host refuses a route naming a service its table lacks).
    package var changed: [String]
    /// Of `changed`, those swapped only because they call an added service, with the services.
    package var callingAdded: [String: [String]]
    /// Services whose code stays but whose default route or arguments changed (main's chain).
    package var rerouted: [String]

    package init(from old: AppIR, to new: AppIR) {
        let before = Dictionary(old.services.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let names = Set(new.services.map(\.name))
        added = names.subtracting(before.keys).sorted()
        removed = Set(before.keys).subtracting(names).sorted()
        let staying = new.services.filter { before[$0.name] != nil }
        var calling: [String: [String]] = [:]
        for service in staying {
            let called = Self.called(by: service)
            let newOnes = added.filter { called.contains($0) }
            if !newOnes.isEmpty { calling[service.name] = newOnes }
        }
        callingAdded = calling
        changed = staying.filter { before[$0.name]?.codeHash != $0.codeHash || calling[$0.name] != nil }.map(\.name)
        rerouted = staying.filter {
            calling[$0.name] == nil && before[$0.name]?.codeHash == $0.codeHash
                && (before[$0.name]?.defaultRoute != $0.defaultRoute || before[$0.name]?.parameters != $0.parameters)
        }.map(\.name)
    }

    /// Nothing to start, swap, reroute or stop.
    package var isEmpty: Bool { added.isEmpty && removed.isEmpty && changed.isEmpty && rerouted.isEmpty }

    /// Every service `service` calls after it runs: each step of its default route and, at any
    /// depth, of the chains in its default arguments, read with the route parser (never by text
    /// search: `map()` inside a string literal, or `remap()`, is no call of map).
    package static func called(by service: ServiceIR) -> Set<String> {
        let parser = RouteParser()
        var names = Set<String>()
        func visit(_ chain: RouteChain) {
            for call in chain.calls {
                names.insert(call.name)
                for argument in call.arguments { visit(argument.value) }
            }
        }
        func visit(_ value: RouteValue) {
            if case .chain(let chain) = value { visit(chain) }
        }
        if let chain = try? parser.parseChain(service.defaultRoute) { visit(chain) }
        for parameter in service.parameters {
            guard let text = parameter.defaultArgument else { continue }
            // A default argument is one value: a literal or a chain.
            if let arguments = try? parser.parseArguments("x: \(text)") {
                for argument in arguments { visit(argument.value) }
            }
        }
        return names
    }
}
