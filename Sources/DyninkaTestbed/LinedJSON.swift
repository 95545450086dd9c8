/// A JSON document whose every value knows the line it starts on, so that a configuration
/// file's errors, syntactic or not, point at the line to fix.

package struct LinedJSON: Sendable {
    /// The value itself.
    package indirect enum Value: Sendable {
        case object([(key: String, value: LinedJSON)])
        case array([LinedJSON])
        case string(String)
        case number(Double)
        case bool(Bool)
        case null
    }

    package var value: Value
    /// 1-based line of the value's first character.
    package var line: Int

    /// A syntax error and where.
    package struct SyntaxError: Error, Sendable {
        package var line: Int
        package var message: String
    }

    /// Parses a whole document (one value, surrounded by whitespace only).
    package static func parse(_ text: String) throws(SyntaxError) -> LinedJSON {
        var parser = Parser(bytes: Array(text.utf8))
        let value = try parser.value()
        parser.skipWhitespace()
        if parser.index < parser.bytes.count { throw parser.error("unexpected text after the document") }
        return value
    }

    /// The member `key` of an object.
    package subscript(key: String) -> LinedJSON? {
        guard case .object(let members) = value else { return nil }
        return members.first { $0.key == key }?.value
    }

    /// A short name of the value's kind, for messages.
    package var kind: String {
        switch value {
        case .object: return "an object"
        case .array: return "a list"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "true or false"
        case .null: return "null"
        }
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0
        var line = 1

        func error(_ message: String) -> SyntaxError { SyntaxError(line: line, message: message) }

        mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\n"): line += 1; index += 1
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"): index += 1
                default: return
                }
            }
        }

        mutating func value() throws(SyntaxError) -> LinedJSON {
            skipWhitespace()
            guard index < bytes.count else { throw error("the file ends where a value should be") }
            let start = line
            switch bytes[index] {
            case UInt8(ascii: "{"):
                index += 1
                var members: [(key: String, value: LinedJSON)] = []
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return LinedJSON(value: .object(members), line: start) }
                while true {
                    skipWhitespace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a quoted key") }
                    let key = try string()
                    if members.contains(where: { $0.key == key }) { throw error("key \"\(key)\" appears twice") }
                    skipWhitespace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':' after \"\(key)\"") }
                    index += 1
                    members.append((key, try value()))
                    skipWhitespace()
                    guard index < bytes.count else { throw error("the file ends inside an object (missing '}')") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "}") { index += 1; return LinedJSON(value: .object(members), line: start) }
                    throw error("expected ',' or '}' after the value of \"\(key)\"")
                }
            case UInt8(ascii: "["):
                index += 1
                var items: [LinedJSON] = []
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return LinedJSON(value: .array(items), line: start) }
                while true {
                    items.append(try value())
                    skipWhitespace()
                    guard index < bytes.count else { throw error("the file ends inside a list (missing ']')") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "]") { index += 1; return LinedJSON(value: .array(items), line: start) }
                    throw error("expected ',' or ']' in a list")
                }
            case UInt8(ascii: "\""):
                return LinedJSON(value: .string(try string()), line: start)
            case UInt8(ascii: "t"): try literal("true"); return LinedJSON(value: .bool(true), line: start)
            case UInt8(ascii: "f"): try literal("false"); return LinedJSON(value: .bool(false), line: start)
            case UInt8(ascii: "n"): try literal("null"); return LinedJSON(value: .null, line: start)
            default:
                let begin = index
                while index < bytes.count, "+-0123456789.eE".utf8.contains(bytes[index]) { index += 1 }
                guard index > begin, let number = Double(String(decoding: bytes[begin..<index], as: UTF8.self)) else {
                    throw error("unexpected character '\(Character(Unicode.Scalar(bytes[max(begin, index - 1)])))'")
                }
                return LinedJSON(value: .number(number), line: start)
            }
        }

        mutating func literal(_ word: String) throws(SyntaxError) {
            let expected = Array(word.utf8)
            guard index + expected.count <= bytes.count, Array(bytes[index..<index + expected.count]) == expected else {
                throw error("unexpected word (expected \(word))")
            }
            index += expected.count
        }

        mutating func string() throws(SyntaxError) -> String {
            index += 1  // the opening quote
            var out: [UInt8] = []
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                switch byte {
                case UInt8(ascii: "\""): return String(decoding: out, as: UTF8.self)
                case UInt8(ascii: "\n"): throw error("a string runs past the end of its line (missing '\"')")
                case UInt8(ascii: "\\"):
                    guard index < bytes.count else { throw error("the file ends inside a string") }
                    let escaped = bytes[index]
                    index += 1
                    switch escaped {
                    case UInt8(ascii: "n"): out.append(10)
                    case UInt8(ascii: "t"): out.append(9)
                    case UInt8(ascii: "r"): out.append(13)
                    case UInt8(ascii: "b"): out.append(8)
                    case UInt8(ascii: "f"): out.append(12)
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escaped)
                    case UInt8(ascii: "u"):
                        guard index + 4 <= bytes.count, let code = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16),
                              let scalar = Unicode.Scalar(code) else { throw error("bad \\u escape") }
                        index += 4
                        out.append(contentsOf: Array(String(Character(scalar)).utf8))
                    default: throw error("unknown escape '\\\(Character(Unicode.Scalar(escaped)))'")
                    }
                default: out.append(byte)
                }
            }
            throw error("the file ends inside a string")
        }
    }
}
