import Foundation

/// The dataflow of main drawn as users would draw it: Mermaid, Graphviz dot, or JSON.
package enum DataflowGraph {
    package enum Format: String, CaseIterable, Sendable { case mermaid, dot, json }

    /// An edge of the dataflow: the next step, or a dependency (fan-in) feeding an argument.
    package struct Edge: Hashable, Sendable {
        package var from: String
        package var to: String
        package var label: String?
        package var dependency: Bool
    }

    /// The services of main's dataflow in order of first use, and its edges.
    package static func edges(_ ir: AppIR) -> (nodes: [String], edges: [Edge]) {
        var nodes: [String] = []
        var edges: [Edge] = []
        func add(_ name: String) { if !nodes.contains(name) { nodes.append(name) } }
        func walk(_ steps: [StepIR], from start: String?) {
            var previous = start
            for step in steps {
                add(step.service)
                for argument in step.arguments {
                    if let chain = argument.chain {
                        walk(chain, from: nil)
                        if let last = chain.last?.service {
                            edges.append(Edge(from: last, to: step.service, label: argument.label, dependency: true))
                        }
                    }
                }
                if let previous {
                    let source = ir.service(previous)
                    edges.append(Edge(from: previous, to: step.service, label: source?.outputOptional == true ? "if not nil" : nil, dependency: false))
                }
                previous = step.service
            }
        }
        walk(ir.dataflow.steps, from: nil)
        return (nodes, edges)
    }

    /// Which services call each service in main's dataflow: the step before it, and for the first
    /// step of an argument's chain, the service that takes the argument (its host makes that call).
    package static func callers(_ ir: AppIR) -> [String: Set<String>] {
        var callers: [String: Set<String>] = [:]
        func walk(_ steps: [StepIR], from start: String?) {
            var previous = start
            for step in steps {
                for argument in step.arguments {
                    if let chain = argument.chain { walk(chain, from: step.service) }
                }
                if let previous { callers[step.service, default: []].insert(previous) }
                previous = step.service
            }
        }
        walk(ir.dataflow.steps, from: nil)
        return callers
    }

    static func label(_ ir: AppIR, _ name: String) -> String {
        guard let s = ir.service(name) else { return name }
        let input = s.receiver ?? (ir.dataflow.entry == name && ir.dataflow.startsFromValue ? "request" : "-")
        return "\(name)\\n\(input) → \(s.output)\(s.outputOptional ? "?" : "")\(s.isAsync ? " (async)" : "")"
    }

    package static func render(_ ir: AppIR, format: Format) -> String {
        let (nodes, edges) = edges(ir)
        switch format {
        case .mermaid:
            var out = "flowchart LR\n    client([client])\n"
            for node in nodes { out += "    \(node)[\"\(label(ir, node).replacingOccurrences(of: "\\n", with: "<br/>"))\"]\n" }
            out += "    client --> \(ir.dataflow.entry)\n"
            for edge in edges {
                let arrow = edge.dependency ? "-.->" : "-->"
                out += "    \(edge.from) \(arrow)\(edge.label.map { "|\($0)|" } ?? "") \(edge.to)\n"
            }
            if let last = ir.dataflow.steps.last?.service { out += "    \(last) --> result([result])\n" }
            return out
        case .dot:
            var out = "digraph \(ir.name) {\n    rankdir=LR;\n    node [shape=box, style=rounded];\n    client [shape=oval];\n    result [shape=oval];\n"
            for node in nodes { out += "    \(node) [label=\"\(label(ir, node))\"];\n" }
            out += "    client -> \(ir.dataflow.entry);\n"
            for edge in edges {
                var attributes: [String] = []
                if let label = edge.label { attributes.append("label=\"\(label)\"") }
                if edge.dependency { attributes.append("style=dashed") }
                out += "    \(edge.from) -> \(edge.to)\(attributes.isEmpty ? "" : " [\(attributes.joined(separator: ", "))]");\n"
            }
            if let last = ir.dataflow.steps.last?.service { out += "    \(last) -> result;\n" }
            return out + "}\n"
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            struct Graph: Encodable {
                var entry: String
                var nodes: [String]
                var edges: [[String: String]]
                var route: String
            }
            let graph = Graph(entry: ir.dataflow.entry, nodes: nodes, edges: edges.map { edge in
                var e = ["from": edge.from, "to": edge.to, "kind": edge.dependency ? "dependency" : "next"]
                if let label = edge.label { e["label"] = label }
                return e
            }, route: Route.source(ir.dataflow.steps))
            return String(decoding: (try? encoder.encode(graph)) ?? Data(), as: UTF8.self) + "\n"
        }
    }
}
