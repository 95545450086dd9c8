import Foundation

/// JSON passed through untouched: a service taking or returning RawJSON never decodes or
/// re-encodes it. Use it for services that only route, tag or log what they receive.
public struct RawJSON: Codable, Sendable, Equatable, CustomStringConvertible {
    /// The JSON text, as UTF-8 bytes.
    public var bytes: [UInt8]

    /// Wraps JSON text given as UTF-8 bytes (not validated).
    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// Wraps JSON text given as a String (not validated).
    public init(_ text: String) { bytes = Array(text.utf8) }

    /// The JSON text.
    public var text: String { String(decoding: bytes, as: UTF8.self) }
    /// The JSON text.
    public var description: String { text }

    /// Decodes the JSON into a Codable value.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }

    /// Encodes a value as RawJSON.
    public init<T: Encodable>(encoding value: T) throws {
        bytes = Array(try JSONEncoder().encode(value))
    }

    /// Reads any JSON value from a decoder (in-process Codable use, as in a local program, goes
    /// through a JSON value tree; under dyninka-host the bytes pass untouched).
    public init(from decoder: Decoder) throws {
        let value = try JSONValue(from: decoder)
        bytes = Array(try JSONEncoder().encode(value))
    }

    /// Writes the JSON value to an encoder; throws when the bytes are not valid JSON.
    public func encode(to encoder: Encoder) throws {
        try JSONDecoder().decode(JSONValue.self, from: Data(bytes)).encode(to: encoder)
    }
}

/// Any JSON value; the bridge RawJSON uses inside ordinary Codable coding.
enum JSONValue: Codable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let b = try? container.decode(Bool.self) { self = .bool(b) }
        else if let n = try? container.decode(Double.self) { self = .number(n) }
        else if let s = try? container.decode(String.self) { self = .string(s) }
        else if let a = try? container.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .number(let n): try container.encode(n)
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }
}
