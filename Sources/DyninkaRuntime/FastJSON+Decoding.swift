import Foundation

// Decoding: one pass over the bytes validates the document and records it as a tape of tokens
// (byte ranges, no Strings); values are converted only when a Decodable asks for them, straight from
// the bytes. Synthesized Codable asks through the concrete overloads (String, Double, Int, ...),
// which never go through a dynamic cast, and a coding path is only built when an error needs it.

extension FastJSON {
    /// Decodes `type` from JSON bytes; throws Unsupported when Foundation must do it.
    static func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeBufferPointer<UInt8>) throws -> T {
        if needsFoundation(T.self) { throw Unsupported() }
        guard bytes.count < Int(Int32.max) else { throw Unsupported() }
        var parser = TapeParser(bytes)
        try parser.document()
        let document = Document(bytes: bytes, tape: parser.tape)
        return try document.value(T.self, at: 0, path: [])
    }

    /// What a token is.
    enum TokenKind: UInt8 {
        case null, yes, no, number, string, escapedString, array, object
    }

    /// One token of a parsed document. Strings: `start..<end` is the text between the quotes;
    /// numbers: the number's text; arrays and objects: `end` is the member count (an object's
    /// members are key, value, key, value, ...). `next` is the tape index after this token's subtree.
    struct Token {
        var kind: TokenKind
        var start: Int32
        var end: Int32
        var next: Int32
    }

    /// Builds the tape; the document is fully validated here, so decoding only meets type errors.
    struct TapeParser {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0
        var depth = 0
        var tape: [Token] = []

        init(_ bytes: UnsafeBufferPointer<UInt8>) {
            self.bytes = bytes
            tape.reserveCapacity(16)
        }

        mutating func document() throws {
            try value()
            skipSpace()
            guard index == bytes.count else { throw corrupted("unexpected data after the JSON value") }
        }

        func corrupted(_ message: String) -> DecodingError {
            DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "\(message) at byte \(index)"))
        }

        @inline(__always) mutating func skipSpace() {
            while index < bytes.count {
                let c = bytes[index]
                guard c == 32 || c == 10 || c == 13 || c == 9 else { return }
                index += 1
            }
        }

        @inline(__always) mutating func expect(_ c: UInt8, _ what: String) throws {
            skipSpace()
            guard index < bytes.count, bytes[index] == c else { throw corrupted("expected \(what)") }
            index += 1
        }

        mutating func append(_ kind: TokenKind, _ start: Int, _ end: Int) {
            tape.append(Token(kind: kind, start: Int32(start), end: Int32(end), next: Int32(tape.count + 1)))
        }

        mutating func value() throws {
            skipSpace()
            guard index < bytes.count else { throw corrupted("unexpected end of the JSON") }
            switch bytes[index] {
            case UInt8(ascii: "{"): try container(object: true)
            case UInt8(ascii: "["): try container(object: false)
            case UInt8(ascii: "\""): try string()
            case UInt8(ascii: "t"): try literal("true"); append(.yes, index - 4, index)
            case UInt8(ascii: "f"): try literal("false"); append(.no, index - 5, index)
            case UInt8(ascii: "n"): try literal("null"); append(.null, index - 4, index)
            default: try number()
            }
        }

        mutating func container(object: Bool) throws {
            depth += 1
            guard depth < 256 else { throw corrupted("JSON nested too deeply") }
            let at = tape.count
            append(object ? .object : .array, index, index)
            index += 1
            let closing = object ? UInt8(ascii: "}") : UInt8(ascii: "]")
            var members = 0
            skipSpace()
            if index < bytes.count, bytes[index] == closing {
                index += 1
            } else {
                while true {
                    if object {
                        skipSpace()
                        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw corrupted("expected a key") }
                        try string()
                        try expect(UInt8(ascii: ":"), "':'")
                    }
                    try value()
                    members += 1
                    skipSpace()
                    guard index < bytes.count else { throw corrupted(object ? "unterminated object" : "unterminated array") }
                    let c = bytes[index]
                    index += 1
                    if c == UInt8(ascii: ",") { continue }
                    if c == closing { break }
                    index -= 1
                    throw corrupted(object ? "expected ',' or '}'" : "expected ',' or ']'")
                }
            }
            depth -= 1
            tape[at].end = Int32(members)
            tape[at].next = Int32(tape.count)
        }

        mutating func literal(_ word: StaticString) throws {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count else { throw corrupted("invalid literal") }
            for i in 0..<count where bytes[index + i] != word.utf8Start[i] { throw corrupted("invalid literal") }
            index += count
        }

        /// A number per the JSON grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
        mutating func number() throws {
            let start = index
            func digits() -> Int {
                let from = index
                while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 { index += 1 }
                return index - from
            }
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            let intStart = index
            let intDigits = digits()
            guard intDigits > 0 else { throw corrupted("invalid value") }
            guard intDigits == 1 || bytes[intStart] != 48 else { throw corrupted("leading zero in a number") }
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard digits() > 0 else { throw corrupted("invalid number") }
            }
            if index < bytes.count, bytes[index] | 0x20 == UInt8(ascii: "e") {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard digits() > 0 else { throw corrupted("invalid number") }
            }
            append(.number, start, index)
        }

        /// A string, its escapes checked (not yet applied).
        mutating func string() throws {
            index += 1
            let start = index
            var escaped = false
            while index < bytes.count {
                let c = bytes[index]
                if c == UInt8(ascii: "\"") {
                    append(escaped ? .escapedString : .string, start, index)
                    index += 1
                    return
                }
                if c < 32 { throw corrupted("control character in a string") }
                if c == UInt8(ascii: "\\") {
                    escaped = true
                    guard index + 1 < bytes.count else { break }
                    switch bytes[index + 1] {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                         UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        index += 2
                    case UInt8(ascii: "u"):
                        index += 2
                        let unit = try hex4()
                        if (0xD800..<0xDC00).contains(unit) {
                            guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                                throw corrupted("unpaired surrogate")
                            }
                            index += 2
                            guard (0xDC00..<0xE000).contains(try hex4()) else { throw corrupted("unpaired surrogate") }
                        } else if (0xDC00..<0xE000).contains(unit) {
                            throw corrupted("unpaired surrogate")
                        }
                    default:
                        throw corrupted("invalid escape")
                    }
                    continue
                }
                index += 1
            }
            throw corrupted("unterminated string")
        }

        mutating func hex4() throws -> UInt32 {
            guard index + 4 <= bytes.count, let v = FastJSON.hex4(bytes, index) else { throw corrupted("invalid \\u escape") }
            index += 4
            return v
        }
    }

    static func hex4(_ bytes: UnsafeBufferPointer<UInt8>, _ at: Int) -> UInt32? {
        var v: UInt32 = 0
        for i in at..<at + 4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case 48...57: d = UInt32(c - 48)
            case 65...70: d = UInt32(c - 55)
            case 97...102: d = UInt32(c - 87)
            default: return nil
            }
            v = v * 16 + d
        }
        return v
    }

    // MARK: Values from the tape

    /// The parsed document: the caller's bytes (valid for the whole decode) and their tape. A
    /// struct: containers share the tape's storage, and no object is allocated for the document.
    struct Document {
        let bytes: UnsafeBufferPointer<UInt8>
        let tape: [Token]

        func mismatch<T>(_ type: T.Type, _ path: [CodingKey], _ at: Int) -> DecodingError {
            let found: String
            switch tape[at].kind {
            case .null: found = "null"
            case .yes, .no: found = "a boolean"
            case .number: found = "a number"
            case .string, .escapedString: found = "a string"
            case .array: found = "an array"
            case .object: found = "an object"
            }
            return DecodingError.typeMismatch(T.self, .init(codingPath: path, debugDescription: "expected \(T.self), found \(found)"))
        }

        func isNull(_ at: Int) -> Bool { tape[at].kind == .null }

        func string(at: Int, path: @autoclosure () -> [CodingKey]) throws -> String {
            let token = tape[at]
            switch token.kind {
            case .string:
                return String(decoding: UnsafeBufferPointer(rebasing: bytes[Int(token.start)..<Int(token.end)]), as: UTF8.self)
            case .escapedString:
                return unescape(Int(token.start), Int(token.end))
            default:
                throw mismatch(String.self, path(), at)
            }
        }

        func bool(at: Int, path: @autoclosure () -> [CodingKey]) throws -> Bool {
            switch tape[at].kind {
            case .yes: return true
            case .no: return false
            default: throw mismatch(Bool.self, path(), at)
            }
        }

        func double(at: Int, path: @autoclosure () -> [CodingKey]) throws -> Double {
            let token = tape[at]
            guard token.kind == .number else { throw mismatch(Double.self, path(), at) }
            if let fast = FastJSON.exactDouble(bytes, Int(token.start), Int(token.end)) { return fast }
            guard let d = Double(numberText(at)), d.isFinite else {
                throw DecodingError.dataCorrupted(.init(codingPath: path(), debugDescription: "number \(numberText(at)) does not fit Double"))
            }
            return d
        }

        func integer<I: FixedWidthInteger>(_ type: I.Type, at: Int, path: @autoclosure () -> [CodingKey]) throws -> I {
            let token = tape[at]
            guard token.kind == .number else { throw mismatch(I.self, path(), at) }
            if let i = FastJSON.exactInteger(I.self, bytes, Int(token.start), Int(token.end)) { return i }
            // 1.0 or 1e3 are integers too, as Foundation reads them.
            let text = numberText(at)
            if let d = Double(text), d.rounded() == d, let i = I(exactly: d) { return i }
            throw DecodingError.dataCorrupted(.init(codingPath: path(), debugDescription: "number \(text) does not fit \(I.self)"))
        }

        func numberText(_ at: Int) -> String {
            let token = tape[at]
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[Int(token.start)..<Int(token.end)]), as: UTF8.self)
        }

        /// The text of a string with escapes (already validated by the parser).
        func unescape(_ start: Int, _ end: Int) -> String {
            var out: [UInt8] = []
            out.reserveCapacity(end - start)
            var i = start
            while i < end {
                let c = bytes[i]
                if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
                let e = bytes[i + 1]
                i += 2
                switch e {
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "u"):
                    var scalar = FastJSON.hex4(bytes, i) ?? 0xFFFD
                    i += 4
                    if (0xD800..<0xDC00).contains(scalar) {
                        let low = FastJSON.hex4(bytes, i + 2) ?? 0xDC00
                        i += 6
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    var utf8 = String(Character(Unicode.Scalar(scalar) ?? "\u{FFFD}"))
                    utf8.withUTF8 { out.append(contentsOf: $0) }
                default: out.append(e)  // \" \\ \/
                }
            }
            return String(decoding: out, as: UTF8.self)
        }

        /// Whether the key token at `at` spells `name`.
        func key(_ at: Int, equals name: inout String) -> Bool {
            let token = tape[at]
            if token.kind == .escapedString { return unescape(Int(token.start), Int(token.end)) == name }
            let count = Int(token.end - token.start)
            return name.withUTF8 { utf8 in
                utf8.count == count && (count == 0 || memcmp(utf8.baseAddress!, bytes.baseAddress! + Int(token.start), count) == 0)
            }
        }

        /// Decodes any Decodable at tape index `at`.
        func value<T: Decodable>(_ type: T.Type, at: Int, path: @autoclosure () -> [CodingKey]) throws -> T {
            if T.self == String.self { return unsafeBitCast(try string(at: at, path: path()), to: T.self) }
            if T.self == Double.self { return unsafeBitCast(try double(at: at, path: path()), to: T.self) }
            if T.self == Int.self { return unsafeBitCast(try integer(Int.self, at: at, path: path()), to: T.self) }
            if T.self == Bool.self { return unsafeBitCast(try bool(at: at, path: path()), to: T.self) }
            if T.self == Float.self {
                let d = try double(at: at, path: path())
                let f = Float(d)
                guard f.isFinite else {
                    throw DecodingError.dataCorrupted(.init(codingPath: path(), debugDescription: "number \(d) does not fit Float"))
                }
                return unsafeBitCast(f, to: T.self)
            }
            if T.self == Int64.self { return unsafeBitCast(try integer(Int64.self, at: at, path: path()), to: T.self) }
            if T.self == Int32.self { return unsafeBitCast(try integer(Int32.self, at: at, path: path()), to: T.self) }
            if T.self == Int16.self { return unsafeBitCast(try integer(Int16.self, at: at, path: path()), to: T.self) }
            if T.self == Int8.self { return unsafeBitCast(try integer(Int8.self, at: at, path: path()), to: T.self) }
            if T.self == UInt.self { return unsafeBitCast(try integer(UInt.self, at: at, path: path()), to: T.self) }
            if T.self == UInt64.self { return unsafeBitCast(try integer(UInt64.self, at: at, path: path()), to: T.self) }
            if T.self == UInt32.self { return unsafeBitCast(try integer(UInt32.self, at: at, path: path()), to: T.self) }
            if T.self == UInt16.self { return unsafeBitCast(try integer(UInt16.self, at: at, path: path()), to: T.self) }
            if T.self == UInt8.self { return unsafeBitCast(try integer(UInt8.self, at: at, path: path()), to: T.self) }
            if needsFoundation(T.self) { throw Unsupported() }
            return try T(from: TapeDecoder(document: self, at: at, codingPath: path()))
        }
    }

    // MARK: Numbers straight from the bytes

    static let powersOfTen: [Double] = (0...22).map { pow(10, Double($0)) }

    /// The number's value when it is exactly computable in one rounding (Clinger's fast path: at most
    /// 15 significant digits and a decimal exponent within ±22), else nil.
    static func exactDouble(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Double? {
        var i = start
        let negative = bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        var mantissa: UInt64 = 0
        var digits = 0
        var exponent = 0
        var fraction = false
        while i < end {
            let c = bytes[i]
            if c >= 48 && c <= 57 {
                if mantissa != 0 || c != 48 { digits += 1 }
                guard digits <= 15 else { return nil }
                mantissa = mantissa * 10 + UInt64(c - 48)
                if fraction { exponent -= 1 }
            } else if c == UInt8(ascii: ".") {
                fraction = true
            } else {
                // An exponent.
                i += 1
                var sign = 1
                if bytes[i] == UInt8(ascii: "-") { sign = -1; i += 1 } else if bytes[i] == UInt8(ascii: "+") { i += 1 }
                var e = 0
                while i < end {
                    e = e * 10 + Int(bytes[i] - 48)
                    guard e < 1000 else { return nil }
                    i += 1
                }
                exponent += sign * e
                break
            }
            i += 1
        }
        guard exponent >= -22 && exponent <= 22 else { return mantissa == 0 ? (negative ? -0.0 : 0) : nil }
        var value = Double(mantissa)
        value = exponent < 0 ? value / powersOfTen[-exponent] : value * powersOfTen[exponent]
        return negative ? -value : value
    }

    /// A plain integer's value (no fraction or exponent) when it fits `I`, else nil.
    static func exactInteger<I: FixedWidthInteger>(_ type: I.Type, _ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> I? {
        var i = start
        let negative = bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        var magnitude: UInt64 = 0
        while i < end {
            let c = bytes[i]
            guard c >= 48 && c <= 57 else { return nil }
            let (times, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(UInt64(c - 48))
            guard !o1 && !o2 else { return nil }
            magnitude = sum
            i += 1
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? I(exactly: Int64.min) : I(exactly: -Int64(magnitude))
        }
        return I(exactly: magnitude)
    }
}
