/// The head of a parsed HTTP message: request line or status, and the header fields.
///
/// Field names and values stay as bytes in one buffer; only the fields asked for become Strings.
/// A class: the parser builds a head once per message and nothing changes it afterwards, so
/// passing it along (request, answer, relayed head) costs one retain, not one per field.
package final class HTTPHead {
    /// Request method ("GET", "POST"); empty for responses.
    package internal(set) var method = ""
    /// Request target as sent ("/healthz"); empty for responses.
    package internal(set) var target = ""
    /// Response status code; 0 for requests.
    package internal(set) var status = 0
    /// Content-Length when the message declared one.
    package internal(set) var contentLength: Int?
    /// Whether the connection may carry another message after this one.
    package internal(set) var keepAlive = false
    package internal(set) var versionMinor = 1

    /// Header bytes: name then value, one field after another.
    let storage: ByteStore
    /// For each field: where the name starts, where the value starts, where the value ends.
    var fields: [(name: Int, value: Int, end: Int)] = []

    init(storage: ByteStore) { self.storage = storage }

    /// Number of header fields.
    package var fieldCount: Int { fields.count }

    /// The value of the first field named `name` (ASCII case-insensitive), or nil.
    package func value(of name: StaticString) -> String? {
        guard let index = index(of: name) else { return nil }
        let field = fields[index]
        return storage.string(field.value..<field.end)
    }

    /// The raw bytes of the first field named `name`, or nil; valid while the head is alive.
    package func valueBytes(of name: StaticString) -> UnsafeRawBufferPointer? {
        guard let index = index(of: name) else { return nil }
        let field = fields[index]
        return UnsafeRawBufferPointer(rebasing: storage.bytes[field.value..<field.end])
    }

    /// Appends the raw bytes of the first field named `name` to `buffer`; false when absent.
    /// Relaying a value this way never makes a String of it.
    @discardableResult
    package func appendValue(of name: StaticString, to buffer: ByteStore) -> Bool {
        guard let index = index(of: name) else { return false }
        let field = fields[index]
        buffer.append(UnsafeRawBufferPointer(rebasing: storage.bytes[field.value..<field.end]))
        return true
    }

    /// Whether a field named `name` is present.
    package func has(_ name: StaticString) -> Bool { index(of: name) != nil }

    /// The values of every field named `name`, in order.
    package func values(of name: StaticString) -> [String] {
        fields.indices.filter { matches(fields[$0], name) }.map { storage.string(fields[$0].value..<fields[$0].end) }
    }

    /// Every field as a (name, value) pair of Strings; for tests and diagnostics.
    package var allFields: [(name: String, value: String)] {
        fields.map { (storage.string($0.name..<$0.value), storage.string($0.value..<$0.end)) }
    }

    /// The value of `traceparent` and whether `tracestate` is present, found in one pass over
    /// the fields (every request asks for them).
    package func traceFields() -> (traceparent: UnsafeRawBufferPointer?, hasTracestate: Bool) {
        var parent: UnsafeRawBufferPointer?
        var state = false
        for field in fields {
            let length = field.value - field.name
            if length == 11, parent == nil, matches(field, "traceparent") {
                parent = UnsafeRawBufferPointer(rebasing: storage.bytes[field.value..<field.end])
            } else if length == 10, matches(field, "tracestate") {
                state = true
            }
        }
        return (parent, state)
    }

    func index(of name: StaticString) -> Int? {
        // Every request asks for several fields: one pass over the field table, lengths first.
        let length = name.utf8CodeUnitCount
        let wanted = name.utf8Start
        guard let base = storage.base?.assumingMemoryBound(to: UInt8.self) else { return nil }
        return fields.withUnsafeBufferPointer { fields in
            for index in fields.indices where fields[index].value - fields[index].name == length
                && Self.equalIgnoringCase(base + fields[index].name, wanted, length) {
                return index
            }
            return nil
        }
    }

    /// Whether `length` bytes at `have` spell `wanted`, ASCII case-insensitively.
    @inline(__always)
    private static func equalIgnoringCase(_ have: UnsafePointer<UInt8>, _ wanted: UnsafePointer<UInt8>, _ length: Int) -> Bool {
        var i = 0
        while i < length, have[i] | 0x20 == wanted[i] | 0x20 { i += 1 }
        return i == length
    }

    private func matches(_ field: (name: Int, value: Int, end: Int), _ name: StaticString) -> Bool {
        let length = field.value - field.name
        guard length == name.utf8CodeUnitCount else { return false }
        return Self.equalIgnoringCase(storage.base!.assumingMemoryBound(to: UInt8.self) + field.name, name.utf8Start, length)
    }
}
