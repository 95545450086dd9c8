import Foundation

/// What a link between two nodes does to the packets on it, in each direction.
package struct LinkConditions: Codable, Equatable, Sendable, CustomStringConvertible {
    /// One-way delay: a round trip over the link takes twice this.
    package var delayMs: Double = 0
    /// Each packet's delay is drawn from delay +- jitter (never reordering packets).
    package var jitterMs: Double = 0
    /// Packets dropped at random, per direction, in percent (100: a partition).
    package var lossPercent: Double = 0
    /// Bandwidth per direction in Mbit/s; nil: unlimited.
    package var rateMbit: Double?

    package init(delayMs: Double = 0, jitterMs: Double = 0, lossPercent: Double = 0, rateMbit: Double? = nil) {
        self.delayMs = delayMs
        self.jitterMs = jitterMs
        self.lossPercent = lossPercent
        self.rateMbit = rateMbit
    }

    /// "20 ms +- 5 ms, 1% loss, 100 Mbit/s", or "LAN (no conditions)".
    package var description: String {
        var parts: [String] = []
        if delayMs > 0 || jitterMs > 0 { parts.append(jitterMs > 0 ? "\(Self.format(delayMs)) ms +- \(Self.format(jitterMs)) ms" : "\(Self.format(delayMs)) ms") }
        if lossPercent > 0 { parts.append("\(Self.format(lossPercent))% loss") }
        if let rateMbit { parts.append("\(Self.format(rateMbit)) Mbit/s") }
        return parts.isEmpty ? "LAN (no conditions)" : parts.joined(separator: ", ")
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}

/// A test bed file (`configs/testbed/*.json`): the nodes, their labels, and the links between
/// them that are not a plain LAN.
///
///     {"name": "fog",
///      "nodes": [{"name": "cloud", "labels": {"zone": "core"}}, {"name": "edge-1", "labels": {"zone": "roof"}}],
///      "links": [{"between": ["edge-1", "cloud"], "delay_ms": 20, "jitter_ms": 5, "loss_percent": 0, "rate_mbit": 100}],
///      "gateway_node": "cloud"}
///
/// Every pair of nodes not named in `links` is a LAN. The bed adds a node `client` for load
/// generators and probes.
package struct TestbedSpec: Sendable {
    package struct Node: Sendable, Equatable {
        package var name: String
        package var labels: [String: String]
    }

    package struct Link: Sendable, Equatable {
        package var a: String
        package var b: String
        package var conditions: LinkConditions
    }

    package var name: String
    package var nodes: [Node]
    package var links: [Link]
    /// Gateway mode on the bed: where the gateway and the orchestrator run (default: the first node).
    package var gatewayNode: String

    /// The node the bed adds for clients (load generators, probes); services are never placed on it.
    package static let clientNode = "client"

    /// A file's error, with the line to fix.
    package struct FileError: Error, CustomStringConvertible, Sendable {
        package var path: String
        package var line: Int
        package var message: String
        package var description: String { "\(path):\(line): \(message)" }
    }

    /// Reads and checks a test bed file.
    package static func load(_ path: String) throws(FileError) -> TestbedSpec {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw FileError(path: path, line: 0, message: "cannot read the file: \(error.localizedDescription)")
        }
        return try parse(text, path: path)
    }

    /// Checks a test bed document; `path` names it in errors.
    package static func parse(_ text: String, path: String) throws(FileError) -> TestbedSpec {
        let root: LinedJSON
        do { root = try LinedJSON.parse(text) } catch {
            throw FileError(path: path, line: error.line, message: "not valid JSON: \(error.message)")
        }
        func fail(_ at: LinedJSON, _ message: String) -> FileError { FileError(path: path, line: at.line, message: message) }
        guard case .object(let members) = root.value else { throw fail(root, "the file must be a JSON object with \"nodes\"") }
        for (key, value) in members where !["name", "nodes", "links", "gateway_node"].contains(key) {
            throw fail(value, "unknown key \"\(key)\" (known: name, nodes, links, gateway_node)")
        }
        var name = "bed"
        if let value = root["name"] {
            guard case .string(let text) = value.value, isDNSLabel(text) else { throw fail(value, "\"name\" must be a short DNS label like \"fog\"") }
            name = text
        }
        guard let nodesValue = root["nodes"] else { throw fail(root, "the file has no \"nodes\" list") }
        guard case .array(let nodeItems) = nodesValue.value, !nodeItems.isEmpty else { throw fail(nodesValue, "\"nodes\" must be a non-empty list") }
        guard nodeItems.count <= 29 else { throw fail(nodesValue, "at most 29 nodes (the bed adds a 30th, client)") }
        var nodes: [Node] = []
        for item in nodeItems {
            guard case .object(let fields) = item.value else { throw fail(item, "a node must be an object like {\"name\": \"edge-1\"}, not \(item.kind)") }
            for (key, value) in fields where !["name", "labels"].contains(key) { throw fail(value, "unknown key \"\(key)\" in a node (known: name, labels)") }
            guard let nameValue = item["name"], case .string(let nodeName) = nameValue.value else { throw fail(item, "a node needs a \"name\"") }
            guard isDNSLabel(nodeName) else { throw fail(nameValue, "node name \"\(nodeName)\" must be lowercase letters, digits and '-', at most 20 characters") }
            guard nodeName != clientNode else { throw fail(nameValue, "\"client\" is the node the bed adds for clients; choose another name") }
            guard !nodes.contains(where: { $0.name == nodeName }) else { throw fail(nameValue, "node \"\(nodeName)\" is defined twice") }
            var labels: [String: String] = [:]
            if let labelValue = item["labels"] {
                guard case .object(let pairs) = labelValue.value else { throw fail(labelValue, "\"labels\" must be an object like {\"zone\": \"roof\"}") }
                for (key, value) in pairs {
                    guard case .string(let text) = value.value else { throw fail(value, "label \"\(key)\" must have a string value") }
                    labels[key] = text
                }
            }
            nodes.append(Node(name: nodeName, labels: labels))
        }
        let known = Set(nodes.map(\.name) + [clientNode])
        var links: [Link] = []
        if let linksValue = root["links"] {
            guard case .array(let linkItems) = linksValue.value else { throw fail(linksValue, "\"links\" must be a list") }
            for item in linkItems {
                guard case .object(let fields) = item.value else { throw fail(item, "a link must be an object like {\"between\": [\"edge-1\", \"cloud\"], \"delay_ms\": 20}") }
                let keys = ["between", "delay_ms", "jitter_ms", "loss_percent", "rate_mbit"]
                for (key, value) in fields where !keys.contains(key) { throw fail(value, "unknown key \"\(key)\" in a link (known: \(keys.joined(separator: ", ")))") }
                guard let between = item["between"], case .array(let ends) = between.value, ends.count == 2,
                      case .string(let a) = ends[0].value, case .string(let b) = ends[1].value else {
                    throw fail(item, "a link needs \"between\": [\"NODE\", \"NODE\"]")
                }
                for end in [a, b] where !known.contains(end) {
                    throw fail(between, "link names node \"\(end)\", which the file does not define (nodes: \(nodes.map(\.name).joined(separator: ", ")), client)")
                }
                guard a != b else { throw fail(between, "a link joins two different nodes") }
                guard !links.contains(where: { Set([$0.a, $0.b]) == Set([a, b]) }) else { throw fail(between, "the link \(a) <-> \(b) is defined twice") }
                func number(_ key: String, max: Double) throws(FileError) -> Double? {
                    guard let value = item[key] else { return nil }
                    guard case .number(let n) = value.value, n >= 0, n <= max else { throw fail(value, "\"\(key)\" must be a number from 0 to \(Int(max))") }
                    return n
                }
                var conditions = LinkConditions()
                conditions.delayMs = try number("delay_ms", max: 10_000) ?? 0
                conditions.jitterMs = try number("jitter_ms", max: 10_000) ?? 0
                conditions.lossPercent = try number("loss_percent", max: 100) ?? 0
                conditions.rateMbit = try number("rate_mbit", max: 100_000)
                if conditions.rateMbit == 0 { throw fail(item, "\"rate_mbit\" must be above 0 (use loss_percent 100 for a cut link)") }
                if conditions.jitterMs > conditions.delayMs { throw fail(item, "\"jitter_ms\" cannot exceed \"delay_ms\"") }
                links.append(Link(a: a, b: b, conditions: conditions))
            }
        }
        var gatewayNode = nodes[0].name
        if let value = root["gateway_node"] {
            guard case .string(let text) = value.value, nodes.contains(where: { $0.name == text }) else {
                throw fail(value, "\"gateway_node\" must name one of the nodes")
            }
            gatewayNode = text
        }
        return TestbedSpec(name: name, nodes: nodes, links: links, gatewayNode: gatewayNode)
    }

    static func isDNSLabel(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 20 && text.first != "-" && text.last != "-"
            && text.allSatisfy { ($0.isLetter && $0.isLowercase && $0.isASCII) || ($0.isNumber && $0.isASCII) || $0 == "-" }
    }
}
