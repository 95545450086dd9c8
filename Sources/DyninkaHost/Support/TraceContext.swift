import DyninkaHTTP

/// The W3C Trace Context of one request at this hop (https://www.w3.org/TR/trace-context/): the
/// trace it belongs to, the caller's span (0 when this hop started the trace) and this hop's own
/// span, which becomes the parent of every call this hop makes.
package struct TraceContext: Equatable, Sendable {
    /// The 128-bit trace id, high and low halves.
    package var traceHigh: UInt64
    package var traceLow: UInt64
    /// The caller's span id; 0 when the request came without a valid `traceparent`.
    package var parent: UInt64
    /// This hop's span id (never 0).
    package var span: UInt64
    /// The caller asked for the trace to be recorded (flag 01), or this host chose to record it.
    package var sampled: Bool
    /// The caller's `tracestate` (fields joined with commas), passed on unchanged with every call;
    /// nil when there was none or the `traceparent` was not valid (the spec then drops it).
    package var state: String?

    package init(traceHigh: UInt64, traceLow: UInt64, parent: UInt64, span: UInt64, sampled: Bool, state: String? = nil) {
        self.traceHigh = traceHigh
        self.traceLow = traceLow
        self.parent = parent
        self.span = span
        self.sampled = sampled
        self.state = state
    }

    /// This hop began the trace (no valid `traceparent` came with the request).
    package var startedHere: Bool { parent == 0 }

    /// The fields of a valid `traceparent` value: trace id, parent id and flags; nil when the
    /// value is not one. Version 00 must be exactly 55 bytes; a later version may append fields
    /// after a dash (the spec's rule for forward compatibility); version ff is invalid. Hex must
    /// be lowercase; all-zero ids are invalid.
    package static func parse(_ value: UnsafeRawBufferPointer) -> (traceHigh: UInt64, traceLow: UInt64, parent: UInt64, flags: UInt8)? {
        guard value.count >= 55, let base = value.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        guard base[2] == UInt8(ascii: "-"), base[35] == UInt8(ascii: "-"), base[52] == UInt8(ascii: "-") else { return nil }
        return digits.withUnsafeBufferPointer { table -> (UInt64, UInt64, UInt64, UInt8)? in
            // Any byte that is not a lowercase hex digit leaves a high bit in `bad`: one check for all.
            var bad: UInt8 = 0
            let version = hex(base, 2, table, &bad)
            let high = hex(base + 3, 16, table, &bad), low = hex(base + 19, 16, table, &bad)
            let parent = hex(base + 36, 16, table, &bad), flags = hex(base + 53, 2, table, &bad)
            guard bad & 0xf0 == 0, version != 0xff, high | low != 0, parent != 0 else { return nil }
            if version == 0, value.count != 55 { return nil }
            if value.count > 55, base[55] != UInt8(ascii: "-") { return nil }
            return (high, low, parent, UInt8(flags))
        }
    }

    /// Each byte's value as a lowercase hex digit; 0xff for any other byte.
    private static let digits: [UInt8] = (0..<256).map { byte in
        switch byte {
        case 48...57: UInt8(byte - 48)
        case 97...102: UInt8(byte - 87)
        default: 0xff
        }
    }

    /// `count` hex digits at `bytes` as a number, through `table`; a byte that is not a digit
    /// sets high bits in `bad`.
    @inline(__always)
    private static func hex(_ bytes: UnsafePointer<UInt8>, _ count: Int, _ table: UnsafeBufferPointer<UInt8>, _ bad: inout UInt8) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<count {
            let digit = table[Int(bytes[i])]
            bad |= digit
            value = value &<< 4 | UInt64(digit & 0xf)
        }
        return value
    }

    /// Most `tracestate` list members passed on (the W3C limit), and most characters.
    package static let maxStateMembers = 32
    package static let maxStateLength = 512

    /// The `tracestate` fields of a request as this hop passes them on: list members trimmed,
    /// empty and malformed ones (no `key=value`, a key or value over 256 characters) dropped, at
    /// most 32, and at most 512 characters: as W3C Trace Context recommends, members over 128
    /// characters go first, then members from the end. nil when nothing is left.
    package static func limitState(_ fields: [String]) -> String? {
        var members: [Substring] = []
        for field in fields {
            for raw in field.split(separator: ",", omittingEmptySubsequences: true) {
                let member = raw.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed()
                let text = Substring(String(member))
                guard let equals = text.firstIndex(of: "="), equals != text.startIndex,
                      text.distance(from: text.startIndex, to: equals) <= 256,
                      text.distance(from: equals, to: text.endIndex) - 1 <= 256,
                      text.distance(from: equals, to: text.endIndex) > 1 else { continue }
                members.append(text)
                if members.count == maxStateMembers { break }
            }
            if members.count == maxStateMembers { break }
        }
        func length() -> Int { members.reduce(0) { $0 + $1.utf8.count } + max(0, members.count - 1) }
        if length() > maxStateLength { members.removeAll { $0.utf8.count > 128 } }
        while length() > maxStateLength { members.removeLast() }
        return members.isEmpty ? nil : members.joined(separator: ",")
    }

    /// "00-TRACEID-SPANID-FLAGS" for a call this hop makes (this hop's span as the parent).
    package func appendTraceparent(to store: ByteStore) {
        // The 55 bytes composed on the stack and appended at once.
        var text: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &text) { raw in
            let out = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            out[0] = 48; out[1] = 48; out[2] = 45
            Self.writeHex(traceHigh, to: out + 3)
            Self.writeHex(traceLow, to: out + 19)
            out[35] = 45
            Self.writeHex(span, to: out + 36)
            out[52] = 45; out[53] = 48; out[54] = sampled ? 49 : 48
            store.append(UnsafeRawBufferPointer(start: out, count: 55))
        }
    }

    @inline(__always)
    private static func writeHex(_ value: UInt64, to out: UnsafeMutablePointer<UInt8>) {
        for i in 0..<16 {
            let nibble = UInt8(truncatingIfNeeded: value &>> UInt64(60 - 4 * i)) & 0xf
            out[i] = nibble < 10 ? nibble &+ 48 : nibble &+ 87
        }
    }

    /// The trace id as 32 lowercase hex digits.
    package var traceID: String { Self.hex(traceHigh) + Self.hex(traceLow) }

    /// 16 lowercase hex digits.
    package static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
