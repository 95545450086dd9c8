/// A literal argument in a route: the constants of a dataflow.
package enum RouteLiteral: Equatable, Sendable {
    case int(Int)
    case double(Double)
    case string(String)
    case bool(Bool)
    case null

    /// The JSON text a service receives for this literal.
    package var json: String {
        switch self {
        case .int(let v): String(v)
        case .double(let v): v.isFinite ? String(v) : "null"
        case .string(let v): JSONText.quote(v)
        case .bool(let v): v ? "true" : "false"
        case .null: "null"
        }
    }

    /// The literal as Swift source.
    package var source: String {
        switch self {
        case .int(let v): String(v)
        case .double(let v): String(v)
        case .string(let v): Self.swiftQuote(v)
        case .bool(let v): v ? "true" : "false"
        case .null: "nil"
        }
    }
}

extension RouteLiteral {
    /// `s` as a Swift string literal, with the escapes the route parser reads back.
    package static func swiftQuote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\0": out += "\\0"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f: out += "\\u{\(String(scalar.value, radix: 16))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// One argument of a call in a route: a literal, or a chain whose result is the value (fan-in).
package indirect enum RouteValue: Equatable, Sendable {
    case literal(RouteLiteral)
    case chain(RouteChain)
}

/// An argument with its label as written (nil when unlabeled).
package struct RouteArgument: Equatable, Sendable {
    package var label: String?
    package var value: RouteValue

    package init(label: String?, value: RouteValue) {
        self.label = label
        self.value = value
    }
}

/// One service call in a route: `name(label: value, ...)`.
package struct RouteCall: Equatable, Sendable {
    package var name: String
    package var arguments: [RouteArgument]
    /// Written with `?.` before it (optional chaining). Cosmetic: nil always stops a chain.
    package var optionalChained: Bool

    package init(name: String, arguments: [RouteArgument], optionalChained: Bool) {
        self.name = name
        self.arguments = arguments
        self.optionalChained = optionalChained
    }

    /// The argument list as Swift source, without parentheses ("" when there are none).
    package var argumentsSource: String {
        arguments.map { arg in
            let value: String = switch arg.value {
            case .literal(let literal): literal.source
            case .chain(let chain): chain.source
            }
            return arg.label.map { "\($0): \(value)" } ?? value
        }.joined(separator: ", ")
    }

    package var source: String { "\(name)(\(argumentsSource))" }
}

/// A chain of service calls in Swift syntax: `filterTemperature()?.map().movingAvg()`.
package struct RouteChain: Equatable, Sendable {
    package var calls: [RouteCall]

    package init(calls: [RouteCall]) { self.calls = calls }

    package var isEmpty: Bool { calls.isEmpty }

    /// The chain as Swift source, as sent in the Dyninka-Route header.
    package var source: String {
        var text = ""
        for (index, call) in calls.enumerated() {
            if index > 0 { text += call.optionalChained ? "?." : "." }
            text += call.source
        }
        return text
    }

    /// The chain without its first call.
    package var rest: RouteChain { RouteChain(calls: Array(calls.dropFirst())) }

    /// Every call, including those nested in arguments.
    package var callCount: Int {
        calls.reduce(0) { total, call in
            total + 1 + call.arguments.reduce(0) {
                if case .chain(let inner) = $1.value { return $0 + inner.callCount }
                return $0
            }
        }
    }
}

/// Why a route could not be used; answered with 400 `bad-route`.
package struct RouteError: Error, Equatable, CustomStringConvertible, Sendable {
    package var message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}

/// Parses routes written as Swift call chains. Only names, parentheses, labels and literals are
/// accepted: a route cannot carry a host, a URL or any other way to pick an address.
package struct RouteParser {
    package var maxLength = 8192
    package var maxDepth = 8

    package init(maxLength: Int = 8192, maxDepth: Int = 8) {
        self.maxLength = maxLength
        self.maxDepth = maxDepth
    }

    /// Parses a whole chain; "" and whitespace are the empty chain ("stop here").
    package func parseChain(_ text: String) throws(RouteError) -> RouteChain {
        guard text.utf8.count <= maxLength else {
            throw RouteError("route is \(text.utf8.count) bytes long; the limit is \(maxLength)")
        }
        var cursor = Cursor(Array(text.utf8))
        cursor.skipSpace()
        // Accept a leading "." or "?." as in `.map()`, the way it reads after a receiver.
        if cursor.peek == UInt8(ascii: "?") && cursor.peek(1) == UInt8(ascii: ".") { cursor.index += 2 }
        else if cursor.peek == UInt8(ascii: ".") { cursor.index += 1 }
        cursor.skipSpace()
        if cursor.atEnd { return RouteChain(calls: []) }
        let chain = try chain(&cursor, depth: 0)
        cursor.skipSpace()
        guard cursor.atEnd else { throw cursor.error("unexpected \(cursor.describePeek)") }
        // The route travels on as printed source; escapes must not push it past the limit.
        guard chain.source.utf8.count <= maxLength else {
            throw RouteError("route is \(chain.source.utf8.count) bytes long once its escapes are written; the limit is \(maxLength)")
        }
        return chain
    }

    /// Parses an argument list without parentheses: `conditions: weather(), limit: 3`.
    package func parseArguments(_ text: String) throws(RouteError) -> [RouteArgument] {
        guard text.utf8.count <= maxLength else {
            throw RouteError("argument list is \(text.utf8.count) bytes long; the limit is \(maxLength)")
        }
        var cursor = Cursor(Array(text.utf8))
        cursor.skipSpace()
        if cursor.atEnd { return [] }
        var arguments: [RouteArgument] = []
        while true {
            arguments.append(try argument(&cursor, depth: 0))
            cursor.skipSpace()
            if cursor.atEnd { return arguments }
            guard cursor.take(UInt8(ascii: ",")) else { throw cursor.error("expected ',' between arguments, found \(cursor.describePeek)") }
        }
    }

    private func chain(_ cursor: inout Cursor, depth: Int) throws(RouteError) -> RouteChain {
        guard depth <= maxDepth else { throw cursor.error("arguments nested deeper than \(maxDepth)") }
        var calls = [try call(&cursor, depth: depth, optionalChained: false)]
        while true {
            let save = cursor.index
            cursor.skipSpace()
            var optional = false
            if cursor.peek == UInt8(ascii: "?") && cursor.peek(1) == UInt8(ascii: ".") {
                cursor.index += 2
                optional = true
            } else if cursor.peek == UInt8(ascii: ".") {
                cursor.index += 1
            } else {
                cursor.index = save
                return RouteChain(calls: calls)
            }
            cursor.skipSpace()
            calls.append(try call(&cursor, depth: depth, optionalChained: optional))
        }
    }

    private func call(_ cursor: inout Cursor, depth: Int, optionalChained: Bool) throws(RouteError) -> RouteCall {
        guard let name = cursor.identifier() else {
            throw cursor.error("expected a service name, found \(cursor.describePeek)")
        }
        cursor.skipSpace()
        guard cursor.take(UInt8(ascii: "(")) else {
            throw cursor.error("expected '(' after '\(name)' (write it as a call: \(name)())")
        }
        var arguments: [RouteArgument] = []
        cursor.skipSpace()
        if !cursor.take(UInt8(ascii: ")")) {
            while true {
                arguments.append(try argument(&cursor, depth: depth + 1))
                cursor.skipSpace()
                if cursor.take(UInt8(ascii: ")")) { break }
                guard cursor.take(UInt8(ascii: ",")) else {
                    throw cursor.error("expected ',' or ')' in the arguments of '\(name)', found \(cursor.describePeek)")
                }
            }
        }
        return RouteCall(name: name, arguments: arguments, optionalChained: optionalChained)
    }

    private func argument(_ cursor: inout Cursor, depth: Int) throws(RouteError) -> RouteArgument {
        cursor.skipSpace()
        var label: String?
        let save = cursor.index
        if let word = cursor.identifier() {
            cursor.skipSpace()
            if cursor.take(UInt8(ascii: ":")) { label = word } else { cursor.index = save }
        }
        cursor.skipSpace()
        if let literal = try literal(&cursor) { return RouteArgument(label: label, value: .literal(literal)) }
        return RouteArgument(label: label, value: .chain(try chain(&cursor, depth: depth)))
    }

    private func literal(_ cursor: inout Cursor) throws(RouteError) -> RouteLiteral? {
        guard let c = cursor.peek else { throw cursor.error("expected an argument, found the end") }
        if c == UInt8(ascii: "\"") { return .string(try cursor.stringLiteral()) }
        if c == UInt8(ascii: "-") || (c >= 48 && c <= 57) { return try cursor.numberLiteral() }
        let save = cursor.index
        if let word = cursor.identifier() {
            cursor.skipSpace()
            let isCall = cursor.peek == UInt8(ascii: "(")
            if !isCall {
                switch word {
                case "true": return .bool(true)
                case "false": return .bool(false)
                case "nil": return .null
                default: throw RouteError("'\(word)' is not a literal or a service call (write '\(word)()' to call a service)")
                }
            }
            cursor.index = save
        }
        return nil
    }
}

/// A position in route text, with the scanning helpers the parser needs.
private struct Cursor {
    let bytes: [UInt8]
    var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { index >= bytes.count }
    var peek: UInt8? { index < bytes.count ? bytes[index] : nil }
    func peek(_ offset: Int) -> UInt8? { index + offset < bytes.count ? bytes[index + offset] : nil }

    var describePeek: String {
        guard let c = peek else { return "the end" }
        return c >= 32 && c < 127 ? "'\(Character(Unicode.Scalar(c)))'" : "byte 0x\(String(c, radix: 16))"
    }

    func error(_ message: String) -> RouteError { RouteError("\(message) at offset \(index)") }

    mutating func skipSpace() {
        while let c = peek, c == 32 || c == 9 { index += 1 }
    }

    mutating func take(_ c: UInt8) -> Bool {
        guard peek == c else { return false }
        index += 1
        return true
    }

    mutating func identifier() -> String? {
        guard let first = peek, first == 95 || (first | 0x20 >= 97 && first | 0x20 <= 122) else { return nil }
        let start = index
        while let c = peek, c == 95 || (c | 0x20 >= 97 && c | 0x20 <= 122) || (c >= 48 && c <= 57) { index += 1 }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    mutating func numberLiteral() throws(RouteError) -> RouteLiteral {
        let start = index
        _ = take(UInt8(ascii: "-"))
        var isDouble = false
        while let c = peek, (c >= 48 && c <= 57) || c == UInt8(ascii: ".") || c == UInt8(ascii: "e")
                || c == UInt8(ascii: "E") || c == UInt8(ascii: "_")
                || ((c == UInt8(ascii: "+") || c == UInt8(ascii: "-")) && (bytes[index - 1] | 0x20) == UInt8(ascii: "e")) {
            if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { isDouble = true }
            index += 1
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self).replacingUnderscores()
        if !isDouble, let value = Int(text) { return .int(value) }
        if let value = Double(text), value.isFinite { return .double(value) }
        throw RouteError("'\(text)' is not a number at offset \(start)")
    }

    mutating func stringLiteral() throws(RouteError) -> String {
        let start = index
        index += 1
        var scalars = String.UnicodeScalarView()
        var run = index
        func flush(_ cursor: Cursor, _ scalars: inout String.UnicodeScalarView) {
            scalars.append(contentsOf: String(decoding: cursor.bytes[run..<cursor.index], as: UTF8.self).unicodeScalars)
        }
        while let c = peek {
            if c == UInt8(ascii: "\"") {
                flush(self, &scalars)
                index += 1
                return String(scalars)
            }
            if c == UInt8(ascii: "\\") {
                flush(self, &scalars)
                guard let e = peek(1) else { break }
                index += 2
                switch e {
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "0"): scalars.append("\0")
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "'"): scalars.append(Unicode.Scalar(e))
                case UInt8(ascii: "u"):
                    guard take(UInt8(ascii: "{")) else { throw error("expected '{' after \\u") }
                    let hexStart = index
                    while let h = peek, h != UInt8(ascii: "}") { index += 1 }
                    guard take(UInt8(ascii: "}")),
                          let value = UInt32(String(decoding: bytes[hexStart..<index - 1], as: UTF8.self), radix: 16),
                          let scalar = Unicode.Scalar(value) else { throw error("invalid \\u{...} escape") }
                    scalars.append(scalar)
                default:
                    throw error("unknown escape '\\\(Character(Unicode.Scalar(e)))'")
                }
                run = index
                continue
            }
            if c < 32 { throw error("control character in a string literal") }
            index += 1
        }
        throw RouteError("unterminated string literal starting at offset \(start)")
    }
}

private extension String {
    func replacingUnderscores() -> String { filter { $0 != "_" } }
}

/// JSON text helpers for the few strings the host writes itself.
package enum JSONText {
    /// `s` as a JSON string literal, quotes included.
    package static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
