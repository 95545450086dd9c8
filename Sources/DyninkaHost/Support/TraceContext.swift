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
        guard value.count >= 55 else { return nil }
        guard let version = hex(value, 0, 2), version != 0xff else { return nil }
        if version == 0, value.count != 55 { return nil }
        if value.count > 55, value[55] != UInt8(ascii: "-") { return nil }
        guard value[2] == UInt8(ascii: "-"), value[35] == UInt8(ascii: "-"), value[52] == UInt8(ascii: "-"),
              let high = hex(value, 3, 16), let low = hex(value, 19, 16), let parent = hex(value, 36, 16),
              let flags = hex(value, 53, 2), high | low != 0, parent != 0 else { return nil }
        return (high, low, parent, UInt8(flags))
    }

    /// `count` lowercase hex digits at `offset` as a number; nil on any other byte.
    private static func hex(_ bytes: UnsafeRawBufferPointer, _ offset: Int, _ count: Int) -> UInt64? {
        var value: UInt64 = 0
        for i in offset..<offset + count {
            let byte = bytes[i]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - 48
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - 87
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }

    /// "00-TRACEID-SPANID-FLAGS" for a call this hop makes (this hop's span as the parent).
    package func appendTraceparent(to store: ByteStore) {
        store.append("00-")
        store.append(hex: traceHigh)
        store.append(hex: traceLow)
        store.append("-")
        store.append(hex: span)
        store.append(sampled ? "-01" : "-00")
    }

    /// The trace id as 32 lowercase hex digits.
    package var traceID: String { Self.hex(traceHigh) + Self.hex(traceLow) }

    /// 16 lowercase hex digits.
    package static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

extension ByteStore {
    /// Appends `value` as 16 lowercase hex digits.
    package func append(hex value: UInt64) {
        var digits: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &digits) { raw in
            for i in 0..<16 {
                let nibble = UInt8(truncatingIfNeeded: value >> UInt64(60 - 4 * i)) & 0xf
                raw[i] = nibble < 10 ? nibble + 48 : nibble + 87
            }
            append(UnsafeRawBufferPointer(raw))
        }
    }
}
