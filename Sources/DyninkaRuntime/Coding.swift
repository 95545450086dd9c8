import CDyninkaABI
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// JSON coding across the table boundary. Output bytes are malloc'd; the host frees them
/// through the table's `free_bytes` (which is `free`).
enum Coding {
    // Both are Sendable and safe to share; making one per call costs more than the coding itself.
    static let decoder = JSONDecoder()
    static let encoder = JSONEncoder()

    static func decode<T: Decodable>(_ type: T.Type, from bytes: dyninka_bytes, what: String) throws -> T {
        if T.self == RawJSON.self {
            let raw = RawJSON(bytes: Array(UnsafeBufferPointer(start: bytes.data, count: bytes.length)))
            return raw as! T
        }
        guard bytes.length > 0, let data = bytes.data else {
            throw DecodingFailure(message: "\(what) is empty; expected JSON for \(T.self)")
        }
        do {
            do {
                return try FastJSON.decode(T.self, from: UnsafeBufferPointer(start: data, count: bytes.length))
            } catch is FastJSON.Unsupported {
                let view = Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: data), count: bytes.length, deallocator: .none)
                return try decoder.decode(T.self, from: view)
            }
        } catch let error as DecodingError {
            throw DecodingFailure(message: "\(what) does not decode as \(T.self): \(describe(error))")
        }
    }

    static func encode<T: Encodable>(_ value: T) throws -> (UnsafeMutablePointer<UInt8>?, Int) {
        if T.self == RawJSON.self, let raw = value as? RawJSON { return copy(raw.bytes) }
        if let (bytes, count) = try? FastJSON.encodeMalloced(value) { return (bytes, count) }
        let data = try encoder.encode(value)
        let count = data.count
        let bytes = malloc(max(count, 1))!.assumingMemoryBound(to: UInt8.self)
        data.copyBytes(to: bytes, count: count)
        return (bytes, count)
    }

    static func copy(_ array: [UInt8]) -> (UnsafeMutablePointer<UInt8>?, Int) {
        let bytes = malloc(max(array.count, 1))!.assumingMemoryBound(to: UInt8.self)
        array.withUnsafeBufferPointer { bytes.update(from: $0.baseAddress!, count: array.count) }
        return (bytes, array.count)
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return keys.isEmpty ? "" : " at '\(keys.joined(separator: "."))'"
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing key '\(key.stringValue)'\(path(context))"
        case .typeMismatch(let type, let context): return "expected \(type)\(path(context))"
        case .valueNotFound(let type, let context): return "null where \(type) is required\(path(context))"
        case .dataCorrupted(let context): return "invalid JSON\(path(context)): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}
