import CDyninkaABI
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The part of `@Placed` state that can move between hosts: one service's variables written as
/// one JSON object (`{"count":3,"average":18.9}`) and read back with every value checked against
/// its type. The generated table glue calls these from the service's `snapshot` and `restore`
/// entries (ABI 3).
public enum PlacedSnapshot {
    /// One variable of a service's state.
    public struct Variable: Sendable {
        let name: String
        let encode: @Sendable () throws -> [UInt8]
        /// Decodes the value from a keyed container and returns how to set it: nothing is set until
        /// every variable has decoded.
        let decode: @Sendable (KeyedDecodingContainer<Key>) throws -> () -> Void
    }

    /// A JSON object key that is any variable name.
    public struct Key: CodingKey {
        /// The variable's name.
        public var stringValue: String
        /// Always nil: state is an object, never an array.
        public var intValue: Int? { nil }
        /// The key of variable `stringValue`.
        public init(stringValue: String) { self.stringValue = stringValue }
        /// Always nil: state is an object, never an array.
        public init?(intValue: Int) { nil }
    }

    /// Why a value cannot move.
    struct Unmovable: Error, CustomStringConvertible {
        var description: String
    }

    /// Describes variable `name`, held in `state`. A value whose type is not Codable cannot be
    /// snapshot; the snapshot says which and why.
    public static func variable<Value>(_ name: String, _ state: PlacedState<Value>) -> Variable {
        Variable(name: name, encode: {
            guard let value = state.value as? any Encodable else {
                throw Unmovable(description: "@Placed var \(name) is a \(Value.self), which is not Codable, so it cannot move; make the type Codable")
            }
            return try FastJSON.encode(value)
        }, decode: { container in
            guard let decodable = Value.self as? any Decodable.Type else {
                throw Unmovable(description: "@Placed var \(name) is a \(Value.self), which is not Codable")
            }
            let value = try decodeValue(decodable, name, container)
            guard let typed = value as? Value else { throw Unmovable(description: "@Placed var \(name) did not decode as \(Value.self)") }
            return { state.value = typed }
        })
    }

    static func decodeValue<T: Decodable>(_ type: T.Type, _ name: String, _ container: KeyedDecodingContainer<Key>) throws -> any Decodable {
        try container.decode(T.self, forKey: Key(stringValue: name))
    }

    /// The JSON object of the variables' current values.
    static func encode(_ variables: [Variable]) throws -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (index, variable) in variables.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out += try FastJSON.encode(variable.name)
            out.append(UInt8(ascii: ":"))
            out += try variable.encode()
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// Sets the variables from a snapshot, all or none.
    static func decode(_ variables: [Variable], from bytes: [UInt8]) throws {
        struct Reader: Decodable {
            static let variablesKey = CodingUserInfoKey(rawValue: "dyninka.variables")!
            let commits: [() -> Void]
            init(from decoder: any Decoder) throws {
                let variables = decoder.userInfo[Self.variablesKey] as? [Variable] ?? []
                let container = try decoder.container(keyedBy: Key.self)
                commits = try variables.map { try $0.decode(container) }
            }
        }
        let decoder = JSONDecoder()
        decoder.userInfo[Reader.variablesKey] = variables
        let reader: Reader
        do { reader = try decoder.decode(Reader.self, from: Data(bytes)) } catch let error as DecodingError {
            throw Unmovable(description: "the snapshot does not fit this build's state: \(Coding.describe(error))")
        }
        for commit in reader.commits { commit() }
    }

    /// The table's `snapshot` entry: the JSON into `*data`, or a message and FUNCTION_ERROR.
    public static func snapshot(_ variables: [Variable], _ data: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?,
                                _ length: UnsafeMutablePointer<Int>?) -> Int32 {
        do {
            hand(try encode(variables), to: data, length)
            return Int32(DYNINKA_STATUS_OK.rawValue)
        } catch {
            hand(Array("\(error)".utf8), to: data, length)
            return Int32(DYNINKA_STATUS_FUNCTION_ERROR.rawValue)
        }
    }

    /// Gives the host malloc'd bytes (released with the table's free_bytes).
    static func hand(_ array: [UInt8], to data: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?, _ length: UnsafeMutablePointer<Int>?) {
        let (bytes, count) = Coding.copy(array)
        data?.pointee = bytes
        length?.pointee = count
    }

    /// The table's `restore` entry: sets the state, or leaves it and writes why into `*message`.
    public static func restore(_ variables: [Variable], _ data: UnsafePointer<UInt8>?, _ length: Int,
                               _ message: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?,
                               _ messageLength: UnsafeMutablePointer<Int>?) -> Int32 {
        do {
            try decode(variables, from: data.map { Array(UnsafeBufferPointer(start: $0, count: length)) } ?? [])
            return Int32(DYNINKA_STATUS_OK.rawValue)
        } catch {
            hand(Array("\(error)".utf8), to: message, messageLength)
            return Int32(DYNINKA_STATUS_BAD_INPUT.rawValue)
        }
    }
}
