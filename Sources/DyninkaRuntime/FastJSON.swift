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

    // MARK: Encoding

    /// Encodes `value` as compact JSON; throws Unsupported when Foundation must do it.
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let (bytes, count) = try encodeMalloced(value)
        defer { free(bytes) }
        return Array(UnsafeBufferPointer(start: bytes, count: count))
    }

    /// Encodes `value` into a malloc'd block the caller frees (what crosses the table boundary).
    static func encodeMalloced<T: Encodable>(_ value: T) throws -> (UnsafeMutablePointer<UInt8>, Int) {
        if needsFoundation(T.self) { throw Unsupported() }
        let writer = Writer()
        try writer.write(value)
        guard writer.complete else { throw Unsupported() }
        return writer.out.take()
    }

    /// Output bytes in one malloc'd block, grown with realloc and handed over without a copy.
    struct Output {
        private(set) var base: UnsafeMutablePointer<UInt8>
        private(set) var count = 0
        private var capacity: Int

        init(capacity: Int) {
            self.capacity = capacity
            base = malloc(capacity)!.assumingMemoryBound(to: UInt8.self)
        }

        mutating func grow(_ more: Int) {
            capacity = max(capacity * 2, count + more)
            base = realloc(base, capacity)!.assumingMemoryBound(to: UInt8.self)
        }

        @inline(__always) mutating func append(_ byte: UInt8) {
            if count == capacity { grow(1) }
            base[count] = byte
            count += 1
        }

        mutating func append(contentsOf bytes: UnsafeBufferPointer<UInt8>) {
            guard bytes.count > 0 else { return }
            if count + bytes.count > capacity { grow(bytes.count) }
            (base + count).update(from: bytes.baseAddress!, count: bytes.count)
            count += bytes.count
        }

        mutating func append(contentsOf bytes: [UInt8]) {
            bytes.withUnsafeBufferPointer { append(contentsOf: $0) }
        }

        /// Gives the block away; this output is empty (and owns a fresh small block) afterwards.
        mutating func take() -> (UnsafeMutablePointer<UInt8>, Int) {
            let taken = (base, count)
            capacity = 16
            count = 0
            base = malloc(capacity)!.assumingMemoryBound(to: UInt8.self)
            return taken
        }

        func release() { free(base) }
    }

    /// Writes JSON as values are encoded; supports one container per value, in order.
    final class Writer {
        // Unchecked: every write of a value goes through these, and the dynamic exclusivity check
        // of a class's stored property (swift_beginAccess) cost more than the append it guarded.
        // Nothing here hands out an access that another could overlap.
        @exclusivity(unchecked) var out = Output(capacity: 256)
        /// Open containers, and for each (one bit per depth) whether it still awaits its first element.
        @exclusivity(unchecked) var depth = 0
        @exclusivity(unchecked) var awaitingFirst: UInt64 = 0
        @exclusivity(unchecked) var complete = true

        deinit { out.release() }

        func write<T: Encodable>(_ value: T) throws {
            // Type equality, not `as?`: a dynamic cast per value costs more than writing it.
            if T.self == String.self { string(unsafeBitCast(value, to: String.self)); return }
            if T.self == Double.self { try double(unsafeBitCast(value, to: Double.self)); return }
            if T.self == Int.self { decimal(unsafeBitCast(value, to: Int.self)); return }
            if T.self == Bool.self { bool(unsafeBitCast(value, to: Bool.self)); return }
            if T.self == Float.self { try double(Double(unsafeBitCast(value, to: Float.self))); return }
            if T.self == Int64.self { decimal(Int(unsafeBitCast(value, to: Int64.self))); return }
            if T.self == Int32.self { decimal(Int(unsafeBitCast(value, to: Int32.self))); return }
            if T.self == Int16.self { decimal(Int(unsafeBitCast(value, to: Int16.self))); return }
            if T.self == Int8.self { decimal(Int(unsafeBitCast(value, to: Int8.self))); return }
            if T.self == UInt.self { unsigned(UInt64(unsafeBitCast(value, to: UInt.self))); return }
            if T.self == UInt64.self { unsigned(unsafeBitCast(value, to: UInt64.self)); return }
            if T.self == UInt32.self { decimal(Int(unsafeBitCast(value, to: UInt32.self))); return }
            if T.self == UInt16.self { decimal(Int(unsafeBitCast(value, to: UInt16.self))); return }
            if T.self == UInt8.self { decimal(Int(unsafeBitCast(value, to: UInt8.self))); return }
            if FastJSON.needsFoundation(T.self) { throw Unsupported() }
            let start = out.count
            let depth = self.depth
            try value.encode(to: ValueEncoder(writer: self))
            // A value that opened no container and wrote nothing: Foundation writes {}.
            if out.count == start && self.depth == depth { literal("{}") }
        }

        func literal(_ text: StaticString) {
            out.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        }

        func bool(_ v: Bool) { if v { literal("true") } else { literal("false") } }

        func decimal(_ v: Int) {
            if v >= 0 && v < 10 { out.append(UInt8(48 + v)); return }
            if v < 0 { out.append(UInt8(ascii: "-")) }
            unsigned(UInt64(v.magnitude))
        }

        func unsigned(_ v: UInt64) {
            // Digits into a stack buffer, most significant first.
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { buffer in
                var n = v
                var i = 20
                repeat {
                    i -= 1
                    buffer[i] = UInt8(48 + n % 10)
                    n /= 10
                } while n > 0
                out.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[i..<20]))
            }
        }

        func double(_ v: Double) throws {
            guard v.isFinite else { throw Unsupported() }
            // As Foundation writes them: integral values without a fraction.
            if v.rounded() == v && abs(v) < 1e15 {
                if v == 0 && v.sign == .minus { out.append(UInt8(ascii: "-")) }
                decimal(Int(v))
            } else {
                var text = v.description
                text.withUTF8 { out.append(contentsOf: $0) }
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
                    case UInt8(ascii: "\""): literal("\\\"")
                    case UInt8(ascii: "\\"): literal("\\\\")
                    case 10: literal("\\n")
                    case 13: literal("\\r")
                    case 9: literal("\\t")
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

        func open(_ bracket: UInt8) throws {
            // Deeper than the bit stack: Foundation's coder takes over.
            guard depth < 64 else { complete = false; throw Unsupported() }
            out.append(bracket)
            awaitingFirst |= 1 << UInt64(depth)
            depth += 1
        }

        func separator() {
            let bit: UInt64 = 1 << UInt64(depth - 1)
            if awaitingFirst & bit != 0 { awaitingFirst &= ~bit } else { out.append(UInt8(ascii: ",")) }
        }

        func close(_ bracket: UInt8) {
            depth -= 1
            awaitingFirst &= ~(1 << UInt64(depth))
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
        /// The writer's depth inside this container; 0 when it could not be opened.
        let depth: Int

        init(writer: Writer, bracket: UInt8) {
            self.writer = writer
            closing = bracket == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
            depth = (try? writer.open(bracket)) != nil ? writer.depth : 0
        }

        /// Elements may only be written while this is the innermost open container.
        func element() throws {
            guard depth > 0, writer.depth == depth else { writer.complete = false; throw Unsupported() }
            writer.separator()
        }

        deinit {
            if depth > 0 && writer.depth == depth { writer.close(closing) } else { writer.complete = false }
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
            box.writer.literal("null")
        }

        mutating func encode(_ value: String, forKey key: Key) throws {
            try self.key(key)
            box.writer.string(value)
        }

        mutating func encode(_ value: Double, forKey key: Key) throws {
            try self.key(key)
            try box.writer.double(value)
        }

        mutating func encode(_ value: Int, forKey key: Key) throws {
            try self.key(key)
            box.writer.decimal(value)
        }

        mutating func encode(_ value: Bool, forKey key: Key) throws {
            try self.key(key)
            box.writer.bool(value)
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
            box.writer.literal("null")
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
        mutating func encodeNil() throws { writer.literal("null") }
        mutating func encode<T: Encodable>(_ value: T) throws { try writer.write(value) }
    }
}
