import DyninkaRoute

/// A small ordered document tree, written as YAML (Kubernetes manifests) or JSON (Marathon).
package indirect enum Doc: Equatable, Sendable {
    case map([(String, Doc)])
    case list([Doc])
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)

    package static func == (a: Doc, b: Doc) -> Bool { a.json == b.json }

    /// Block-style YAML, two-space indentation, keys in the order given.
    package var yaml: String {
        var out = ""
        write(yaml: &out, indent: 0, inList: false)
        return out
    }

    private func write(yaml out: inout String, indent: Int, inList: Bool) {
        let pad = String(repeating: " ", count: indent)
        switch self {
        case .map(let pairs):
            if pairs.isEmpty { out += "{}\n"; return }
            for (index, (key, value)) in pairs.enumerated() {
                let prefix = inList && index == 0 ? "" : pad
                out += prefix + Doc.scalar(key) + ":"
                value.write(child: &out, indent: indent + 2)
            }
        case .list(let items):
            if items.isEmpty { out += "[]\n"; return }
            for item in items {
                out += pad + "- "
                switch item {
                case .map(let pairs) where !pairs.isEmpty: item.write(yaml: &out, indent: indent + 2, inList: true)
                case .list(let inner) where !inner.isEmpty:
                    out += "\n"
                    item.write(yaml: &out, indent: indent + 2, inList: false)
                default: out += item.inline + "\n"
                }
            }
        default:
            out += pad + inline + "\n"
        }
    }

    private func write(child out: inout String, indent: Int) {
        switch self {
        case .map(let pairs) where !pairs.isEmpty:
            out += "\n"
            write(yaml: &out, indent: indent, inList: false)
        case .list(let items) where !items.isEmpty:
            out += "\n"
            write(yaml: &out, indent: indent - 2 < 0 ? 0 : indent - 2, inList: false)
        default:
            out += " " + inline + "\n"
        }
    }

    private var inline: String {
        switch self {
        case .map(let pairs) where pairs.isEmpty: "{}"
        case .list(let items) where items.isEmpty: "[]"
        case .string(let s): Doc.scalar(s)
        case .int(let i): String(i)
        case .double(let d): String(d)
        case .bool(let b): b ? "true" : "false"
        default: json
        }
    }

    /// A YAML scalar: plain when unambiguous, double-quoted otherwise.
    static func scalar(_ s: String) -> String {
        let special: Set<Character> = [":", "#", "{", "}", "[", "]", ",", "&", "*", "!", "|", ">", "'", "\"", "%", "@", "`", "\\", "$"]
        let reserved = ["", "true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"]
        let plain = !reserved.contains(s.lowercased()) && Double(s) == nil && Int(s) == nil
            && !s.contains(where: { special.contains($0) || $0.isNewline }) && !s.hasPrefix("-") && !s.hasPrefix(" ") && !s.hasSuffix(" ")
            && !s.hasPrefix("?")
        return plain ? s : json(string: s)
    }

    /// Compact JSON.
    package var json: String {
        switch self {
        case .map(let pairs): "{" + pairs.map { Doc.json(string: $0.0) + ":" + $0.1.json }.joined(separator: ",") + "}"
        case .list(let items): "[" + items.map(\.json).joined(separator: ",") + "]"
        case .string(let s): Doc.json(string: s)
        case .int(let i): String(i)
        case .double(let d): String(d)
        case .bool(let b): b ? "true" : "false"
        }
    }

    /// Indented JSON (two spaces), keys in the order given.
    package func prettyJSON(indent: Int = 0) -> String {
        let pad = String(repeating: " ", count: indent + 2)
        let close = String(repeating: " ", count: indent)
        switch self {
        case .map(let pairs) where !pairs.isEmpty:
            return "{\n" + pairs.map { pad + Doc.json(string: $0.0) + ": " + $0.1.prettyJSON(indent: indent + 2) }.joined(separator: ",\n") + "\n" + close + "}"
        case .list(let items) where !items.isEmpty && items.contains(where: { if case .map = $0 { true } else if case .list = $0 { true } else { false } }):
            return "[\n" + items.map { pad + $0.prettyJSON(indent: indent + 2) }.joined(separator: ",\n") + "\n" + close + "]"
        default:
            return json
        }
    }

    /// A JSON string literal (the same escaping the host uses for its error bodies).
    static func json(string s: String) -> String { JSONText.quote(s) }
}

import Foundation
