import Foundation

// A direct Codable JSON coder for the hop path: bytes to values and values to bytes with no
// intermediate Foundation objects. It covers what synthesized Codable does (structs, enums with
// raw values, arrays, dictionaries, optionals, the standard scalars); anything else (Date, Data,
// URL, Decimal, super coders, several containers on one value) throws `FastJSON.Unsupported`, and
// the caller falls back to Foundation's coder, so results never differ in meaning.

enum FastJSON {
    /// The value needs Foundation's coder.
    struct Unsupported: Error {}

    /// Types whose Foundation coding uses strategies (dates, data, URLs, decimals).
    static func needsFoundation(_ type: Any.Type) -> Bool {
        type == Date.self || type == Data.self || type == URL.self || type == Decimal.self
    }

    // MARK: Parsing

    /// A parsed JSON value.
    indirect enum Value {
        case null
        case bool(Bool)
        /// The number's text, parsed on demand into the type asked for.
        case number(String)
        case string(String)
        case array([Value])
        case object([(String, Value)])
    }

    struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0
        var depth = 0

        init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        mutating func document() throws -> Value {
            let value = try self.value()
            skipSpace()
            guard index == bytes.count else { throw corrupted("unexpected data after the JSON value") }
            return value
        }

        func corrupted(_ message: String) -> DecodingError {
            DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "\(message) at byte \(index)"))
        }

        mutating func skipSpace() {
            while index < bytes.count, bytes[index] == 32 || bytes[index] == 10 || bytes[index] == 13 || bytes[index] == 9 { index += 1 }
        }

        mutating func value() throws -> Value {
            skipSpace()
            guard index < bytes.count else { throw corrupted("unexpected end of the JSON") }
            switch bytes[index] {
            case UInt8(ascii: "{"):
                depth += 1
                guard depth < 256 else { throw corrupted("JSON nested too deeply") }
                index += 1
                var pairs: [(String, Value)] = []
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; depth -= 1; return .object(pairs) }
                while true {
                    skipSpace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw corrupted("expected a key") }
                    let key = try string()
                    skipSpace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw corrupted("expected ':'") }
                    index += 1
                    pairs.append((key, try value()))
                    skipSpace()
                    guard index < bytes.count else { throw corrupted("unterminated object") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "}") { index += 1; depth -= 1; return .object(pairs) }
                    throw corrupted("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                depth += 1
                guard depth < 256 else { throw corrupted("JSON nested too deeply") }
                index += 1
                var items: [Value] = []
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; depth -= 1; return .array(items) }
                while true {
                    items.append(try value())
                    skipSpace()
                    guard index < bytes.count else { throw corrupted("unterminated array") }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "]") { index += 1; depth -= 1; return .array(items) }
                    throw corrupted("expected ',' or ']'")
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            default:
                return .number(try number())
            }
        }

        mutating func literal(_ word: StaticString) throws {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count else { throw corrupted("invalid literal") }
            for i in 0..<count where bytes[index + i] != word.utf8Start[i] { throw corrupted("invalid literal") }
            index += count
        }

        mutating func number() throws -> String {
            let start = index
            if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
            var digits = 0
            while index < bytes.count {
                let c = bytes[index]
                if c >= 48 && c <= 57 { digits += 1 } else if !(c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E")
                        || c == UInt8(ascii: "+") || c == UInt8(ascii: "-")) { break }
                index += 1
            }
            guard digits > 0 else { throw corrupted("invalid value") }
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        }

        mutating func string() throws -> String {
            index += 1
            let start = index
            // Fast path: no escapes.
            while index < bytes.count {
                let c = bytes[index]
                if c == UInt8(ascii: "\"") {
                    let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                    index += 1
                    return text
                }
                if c == UInt8(ascii: "\\") || c < 32 { break }
                index += 1
            }
            var out = Array(bytes[start..<index])
            while index < bytes.count {
                let c = bytes[index]
                if c == UInt8(ascii: "\"") { index += 1; return String(decoding: out, as: UTF8.self) }
                if c < 32 { throw corrupted("control character in a string") }
                if c != UInt8(ascii: "\\") { out.append(c); index += 1; continue }
                guard index + 1 < bytes.count else { break }
                let e = bytes[index + 1]
                index += 2
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw corrupted("unpaired surrogate")
                        }
                        index += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw corrupted("unpaired surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw corrupted("unpaired surrogate")
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw corrupted("invalid \\u escape") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw corrupted("invalid escape")
                }
            }
            throw corrupted("unterminated string")
        }

        mutating func hex4() throws -> UInt32 {
            guard index + 4 <= bytes.count else { throw corrupted("invalid \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[index]
                let d: UInt32
                switch c {
                case 48...57: d = UInt32(c - 48)
                case 65...70: d = UInt32(c - 55)
                case 97...102: d = UInt32(c - 87)
                default: throw corrupted("invalid \\u escape")
                }
                v = v * 16 + d
                index += 1
            }
            return v
        }
    }

    /// Decodes `type` from JSON bytes; throws Unsupported when Foundation must do it.
    static func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeBufferPointer<UInt8>) throws -> T {
        if needsFoundation(T.self) { throw Unsupported() }
        var parser = Parser(bytes)
        let root = try parser.document()
        return try T(from: ValueDecoder(value: root, codingPath: []))
    }

    // MARK: Decoding

    struct ValueDecoder: Decoder {
        let value: Value
        let codingPath: [CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
            guard case .object(let pairs) = value else {
                throw DecodingError.typeMismatch([String: Any].self, .init(codingPath: codingPath, debugDescription: "expected an object"))
            }
            return KeyedDecodingContainer(Keyed<Key>(pairs: pairs, codingPath: codingPath))
        }

        func unkeyedContainer() throws -> UnkeyedDecodingContainer {
            guard case .array(let items) = value else {
                throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "expected an array"))
            }
            return Unkeyed(items: items, codingPath: codingPath)
        }

        func singleValueContainer() throws -> SingleValueDecodingContainer { Single(value: value, codingPath: codingPath) }
    }

    static func scalar<T: Decodable>(_ value: Value, _ type: T.Type, _ path: [CodingKey]) throws -> T {
        func mismatch() -> DecodingError {
            DecodingError.typeMismatch(T.self, .init(codingPath: path, debugDescription: "expected \(T.self)"))
        }
        switch type {
        case is String.Type:
            guard case .string(let s) = value else { throw mismatch() }
            return s as! T
        case is Bool.Type:
            guard case .bool(let b) = value else { throw mismatch() }
            return b as! T
        case is Double.Type:
            guard case .number(let n) = value, let d = Double(n), d.isFinite else { throw mismatch() }
            return d as! T
        case is Float.Type:
            guard case .number(let n) = value, let d = Float(n), d.isFinite else { throw mismatch() }
            return d as! T
        case is Int.Type: return try integer(value, Int.self, path, mismatch) as! T
        case is Int64.Type: return try integer(value, Int64.self, path, mismatch) as! T
        case is Int32.Type: return try integer(value, Int32.self, path, mismatch) as! T
        case is Int16.Type: return try integer(value, Int16.self, path, mismatch) as! T
        case is Int8.Type: return try integer(value, Int8.self, path, mismatch) as! T
        case is UInt.Type: return try integer(value, UInt.self, path, mismatch) as! T
        case is UInt64.Type: return try integer(value, UInt64.self, path, mismatch) as! T
        case is UInt32.Type: return try integer(value, UInt32.self, path, mismatch) as! T
        case is UInt16.Type: return try integer(value, UInt16.self, path, mismatch) as! T
        case is UInt8.Type: return try integer(value, UInt8.self, path, mismatch) as! T
        default:
            if needsFoundation(T.self) { throw Unsupported() }
            return try T(from: ValueDecoder(value: value, codingPath: path))
        }
    }

    static func integer<I: FixedWidthInteger>(_ value: Value, _ type: I.Type, _ path: [CodingKey], _ mismatch: () -> DecodingError) throws -> I {
        guard case .number(let n) = value else { throw mismatch() }
        if let i = I(n) { return i }
        // 1.0 or 1e3 are integers too, as Foundation reads them.
        if let d = Double(n), d.rounded() == d, let i = I(exactly: d) { return i }
        throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription: "number \(n) does not fit \(I.self)"))
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int?
        init(stringValue: String) { self.stringValue = stringValue }
        init(intValue: Int) { stringValue = String(intValue); self.intValue = intValue }
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let pairs: [(String, Value)]
        let codingPath: [CodingKey]
        var allKeys: [Key] { pairs.compactMap { Key(stringValue: $0.0) } }

        func find(_ key: Key) -> Value? {
            let name = key.stringValue
            for (k, v) in pairs where k == name { return v }
            return nil
        }

        func contains(_ key: Key) -> Bool { find(key) != nil }

        func require(_ key: Key) throws -> Value {
            guard let value = find(key) else {
                throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "no value for key '\(key.stringValue)'"))
            }
            return value
        }

        func decodeNil(forKey key: Key) throws -> Bool {
            if case .null = try require(key) { return true }
            return false
        }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            let value = try require(key)
            if case .null = value {
                throw DecodingError.valueNotFound(T.self, .init(codingPath: codingPath + [key], debugDescription: "null for '\(key.stringValue)'"))
            }
            return try FastJSON.scalar(value, type, codingPath + [key])
        }

        func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
            guard let value = find(key) else { return nil }
            if case .null = value { return nil }
            return try FastJSON.scalar(value, type, codingPath + [key])
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            try ValueDecoder(value: require(key), codingPath: codingPath + [key]).container(keyedBy: type)
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
            try ValueDecoder(value: require(key), codingPath: codingPath + [key]).unkeyedContainer()
        }

        func superDecoder() throws -> Decoder { throw Unsupported() }
        func superDecoder(forKey key: Key) throws -> Decoder { throw Unsupported() }
    }

    struct Unkeyed: UnkeyedDecodingContainer {
        let items: [Value]
        let codingPath: [CodingKey]
        var currentIndex = 0
        var count: Int? { items.count }
        var isAtEnd: Bool { currentIndex >= items.count }

        mutating func next() throws -> Value {
            guard !isAtEnd else {
                throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "array ended at \(currentIndex)"))
            }
            defer { currentIndex += 1 }
            return items[currentIndex]
        }

        mutating func decodeNil() throws -> Bool {
            guard !isAtEnd else { return false }
            if case .null = items[currentIndex] { currentIndex += 1; return true }
            return false
        }

        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
            let path = codingPath + [AnyKey(intValue: currentIndex)]
            let value = try next()
            if case .null = value { throw DecodingError.valueNotFound(T.self, .init(codingPath: path, debugDescription: "null in array")) }
            return try FastJSON.scalar(value, type, path)
        }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
            let path = codingPath + [AnyKey(intValue: currentIndex)]
            return try ValueDecoder(value: next(), codingPath: path).container(keyedBy: type)
        }

        mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer {
            let path = codingPath + [AnyKey(intValue: currentIndex)]
            return try ValueDecoder(value: next(), codingPath: path).unkeyedContainer()
        }

        mutating func superDecoder() throws -> Decoder { throw Unsupported() }
    }

    struct Single: SingleValueDecodingContainer {
        let value: Value
        let codingPath: [CodingKey]
        func decodeNil() -> Bool { if case .null = value { return true }; return false }
        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            if case .null = value { throw DecodingError.valueNotFound(T.self, .init(codingPath: codingPath, debugDescription: "null")) }
            return try FastJSON.scalar(value, type, codingPath)
        }
    }

    // MARK: Encoding

    /// Encodes `value` as compact JSON; throws Unsupported when Foundation must do it.
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        if needsFoundation(T.self) { throw Unsupported() }
        let writer = Writer()
        try writer.write(value)
        guard writer.complete else { throw Unsupported() }
        return writer.out
    }

    /// Writes JSON as values are encoded; supports one container per value, in order.
    final class Writer {
        var out: [UInt8] = []
        /// Open containers: whether each still awaits its first element.
        var first: [Bool] = []
        var complete = true

        init() { out.reserveCapacity(128) }

        func write<T: Encodable>(_ value: T) throws {
            switch value {
            case let v as String: string(v)
            case let v as Bool: out.append(contentsOf: v ? Array("true".utf8) : Array("false".utf8))
            case let v as Double: try double(v)
            case let v as Float: try double(Double(v))
            case let v as Int: decimal(v)
            case let v as Int64: decimal(Int(v))
            case let v as Int32: decimal(Int(v))
            case let v as Int16: decimal(Int(v))
            case let v as Int8: decimal(Int(v))
            case let v as UInt: out.append(contentsOf: Array(String(v).utf8))
            case let v as UInt64: out.append(contentsOf: Array(String(v).utf8))
            case let v as UInt32: decimal(Int(v))
            case let v as UInt16: decimal(Int(v))
            case let v as UInt8: decimal(Int(v))
            default:
                if FastJSON.needsFoundation(T.self) { throw Unsupported() }
                let start = out.count
                let depth = first.count
                try value.encode(to: ValueEncoder(writer: self))
                // A value that opened no container and wrote nothing: Foundation writes {}.
                if out.count == start && first.count == depth { out.append(contentsOf: Array("{}".utf8)) }
            }
        }

        func decimal(_ v: Int) {
            if v >= 0 && v < 10 { out.append(UInt8(48 + v)); return }
            out.append(contentsOf: Array(String(v).utf8))
        }

        func double(_ v: Double) throws {
            guard v.isFinite else { throw Unsupported() }
            // As Foundation writes them: integral values without a fraction.
            if v.rounded() == v && abs(v) < 1e15 {
                decimal(Int(v))
                if v == 0 && v.sign == .minus { out.insert(UInt8(ascii: "-"), at: out.count - 1) }
            } else {
                out.append(contentsOf: Array(v.description.utf8))
            }
        }

        func string(_ s: String) {
            out.append(UInt8(ascii: "\""))
            var s = s
            s.withUTF8 { utf8 in
                // Copy runs that need no escaping in bulk; escape the few bytes that do.
                var run = 0
                for i in 0..<utf8.count {
                    let b = utf8[i]
                    guard b < 32 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") else { continue }
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[run..<i]))
                    switch b {
                    case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
                    case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
                    case 10: out.append(contentsOf: [92, 110])
                    case 13: out.append(contentsOf: [92, 114])
                    case 9: out.append(contentsOf: [92, 116])
                    default:
                        let hex: StaticString = "0123456789abcdef"
                        out.append(contentsOf: [92, 117, 48, 48, hex.utf8Start[Int(b >> 4)], hex.utf8Start[Int(b & 15)]])
                    }
                    run = i + 1
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[run...]))
            }
            out.append(UInt8(ascii: "\""))
        }

        func open(_ bracket: UInt8) {
            out.append(bracket)
            first.append(true)
        }

        func separator() {
            if first.last == true { first[first.count - 1] = false } else { out.append(UInt8(ascii: ",")) }
        }

        func close(_ bracket: UInt8) {
            first.removeLast()
            out.append(bracket)
        }
    }

    /// Closes the containers a value opened once its `encode(to:)` returns.
    struct ValueEncoder: Encoder {
        let writer: Writer
        var codingPath: [CodingKey] { [] }
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
            KeyedEncodingContainer(KeyedWriter<Key>(box: ContainerBox(writer: writer, bracket: UInt8(ascii: "{"))))
        }

        func unkeyedContainer() -> UnkeyedEncodingContainer {
            UnkeyedWriter(box: ContainerBox(writer: writer, bracket: UInt8(ascii: "[")))
        }

        func singleValueContainer() -> SingleValueEncodingContainer { SingleWriter(writer: writer) }
    }

    /// One open container; it closes itself when the last reference goes (the value's encode(to:) returned).
    final class ContainerBox {
        let writer: Writer
        let closing: UInt8
        let depth: Int

        init(writer: Writer, bracket: UInt8) {
            self.writer = writer
            closing = bracket == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
            writer.open(bracket)
            depth = writer.first.count
        }

        /// Elements may only be written while this is the innermost open container.
        func element() throws {
            guard writer.first.count == depth else { writer.complete = false; throw Unsupported() }
            writer.separator()
        }

        deinit {
            if writer.first.count == depth { writer.close(closing) } else { writer.complete = false }
        }
    }

    struct KeyedWriter<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let box: ContainerBox
        var codingPath: [CodingKey] { [] }

        func key(_ key: Key) throws {
            try box.element()
            box.writer.string(key.stringValue)
            box.writer.out.append(UInt8(ascii: ":"))
        }

        mutating func encodeNil(forKey key: Key) throws {
            try self.key(key)
            box.writer.out.append(contentsOf: Array("null".utf8))
        }

        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            try self.key(key)
            try box.writer.write(value)
        }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            try? self.key(key)
            return KeyedEncodingContainer(KeyedWriter<NestedKey>(box: ContainerBox(writer: box.writer, bracket: UInt8(ascii: "{"))))
        }

        mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
            try? self.key(key)
            return UnkeyedWriter(box: ContainerBox(writer: box.writer, bracket: UInt8(ascii: "[")))
        }

        mutating func superEncoder() -> Encoder { box.writer.complete = false; return ValueEncoder(writer: Writer()) }
        mutating func superEncoder(forKey key: Key) -> Encoder { box.writer.complete = false; return ValueEncoder(writer: Writer()) }
    }

    struct UnkeyedWriter: UnkeyedEncodingContainer {
        let box: ContainerBox
        var codingPath: [CodingKey] { [] }
        var count = 0

        mutating func encodeNil() throws {
            try box.element()
            box.writer.out.append(contentsOf: Array("null".utf8))
            count += 1
        }

        mutating func encode<T: Encodable>(_ value: T) throws {
            try box.element()
            try box.writer.write(value)
            count += 1
        }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            try? box.element()
            count += 1
            return KeyedEncodingContainer(KeyedWriter<NestedKey>(box: ContainerBox(writer: box.writer, bracket: UInt8(ascii: "{"))))
        }

        mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
            try? box.element()
            count += 1
            return UnkeyedWriter(box: ContainerBox(writer: box.writer, bracket: UInt8(ascii: "[")))
        }

        mutating func superEncoder() -> Encoder { box.writer.complete = false; return ValueEncoder(writer: Writer()) }
    }

    struct SingleWriter: SingleValueEncodingContainer {
        let writer: Writer
        var codingPath: [CodingKey] { [] }
        mutating func encodeNil() throws { writer.out.append(contentsOf: Array("null".utf8)) }
        mutating func encode<T: Encodable>(_ value: T) throws { try writer.write(value) }
    }
}
