import Foundation

// Decoding, continued: the Decoder and its containers over the tape that FastJSON+Decoding.swift
// builds. They read values straight from the bytes when a Decodable asks for them.

extension FastJSON {
    // MARK: Decoder and containers

    struct TapeDecoder: Decoder {
        let document: Document
        let at: Int
        let codingPath: [CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
            guard document.tape[at].kind == .object else { throw document.mismatch([String: Any].self, codingPath, at) }
            return KeyedDecodingContainer(Keyed<Key>(document: document, at: at, codingPath: codingPath))
        }

        func unkeyedContainer() throws -> UnkeyedDecodingContainer {
            guard document.tape[at].kind == .array else { throw document.mismatch([Any].self, codingPath, at) }
            return Unkeyed(document: document, at: at, codingPath: codingPath)
        }

        func singleValueContainer() throws -> SingleValueDecodingContainer {
            Single(document: document, at: at, codingPath: codingPath)
        }
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int?
        init(stringValue: String) { self.stringValue = stringValue }
        init(intValue: Int) { stringValue = String(intValue); self.intValue = intValue }
    }

    /// Large objects (dictionaries) get an index by key; small ones are scanned.
    final class KeyIndex {
        var positions: [String: Int] = [:]
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let document: Document
        let at: Int
        let codingPath: [CodingKey]
        let index: KeyIndex?

        init(document: Document, at: Int, codingPath: [CodingKey]) {
            self.document = document
            self.at = at
            self.codingPath = codingPath
            if document.tape[at].end > 16 {
                let index = KeyIndex()
                var i = at + 1
                for _ in 0..<Int(document.tape[at].end) {
                    let name = (try? document.string(at: i, path: [])) ?? ""
                    if index.positions[name] == nil { index.positions[name] = i + 1 }
                    i = Int(document.tape[i + 1].next)
                }
                self.index = index
            } else {
                index = nil
            }
        }

        var allKeys: [Key] {
            var keys: [Key] = []
            var i = at + 1
            for _ in 0..<Int(document.tape[at].end) {
                if let name = try? document.string(at: i, path: []), let key = Key(stringValue: name) { keys.append(key) }
                i = Int(document.tape[i + 1].next)
            }
            return keys
        }

        /// The tape index of the value for `key`, if present.
        func find(_ key: Key) -> Int? {
            var name = key.stringValue
            if let index { return index.positions[name] }
            var i = at + 1
            for _ in 0..<Int(document.tape[at].end) {
                if document.key(i, equals: &name) { return i + 1 }
                i = Int(document.tape[i + 1].next)
            }
            return nil
        }

        func contains(_ key: Key) -> Bool { find(key) != nil }

        func path(_ key: Key) -> [CodingKey] { codingPath + [key] }

        func require(_ key: Key) throws -> Int {
            guard let value = find(key) else {
                throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "no value for key '\(key.stringValue)'"))
            }
            return value
        }

        /// The value for `key`, refusing null.
        func present<T>(_ type: T.Type, _ key: Key) throws -> Int {
            let value = try require(key)
            if document.isNull(value) {
                throw DecodingError.valueNotFound(T.self, .init(codingPath: path(key), debugDescription: "null for '\(key.stringValue)'"))
            }
            return value
        }

        func decodeNil(forKey key: Key) throws -> Bool { document.isNull(try require(key)) }

        func decode(_ type: String.Type, forKey key: Key) throws -> String {
            try document.string(at: present(type, key), path: path(key))
        }

        func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
            try document.double(at: present(type, key), path: path(key))
        }

        func decode(_ type: Int.Type, forKey key: Key) throws -> Int {
            try document.integer(Int.self, at: present(type, key), path: path(key))
        }

        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
            try document.bool(at: present(type, key), path: path(key))
        }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            try document.value(T.self, at: present(type, key), path: path(key))
        }

        func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? {
            guard let value = find(key), !document.isNull(value) else { return nil }
            return try document.string(at: value, path: path(key))
        }

        func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? {
            guard let value = find(key), !document.isNull(value) else { return nil }
            return try document.double(at: value, path: path(key))
        }

        func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? {
            guard let value = find(key), !document.isNull(value) else { return nil }
            return try document.integer(Int.self, at: value, path: path(key))
        }

        func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
            guard let value = find(key), !document.isNull(value) else { return nil }
            return try document.value(T.self, at: value, path: path(key))
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            try TapeDecoder(document: document, at: require(key), codingPath: path(key)).container(keyedBy: type)
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
            try TapeDecoder(document: document, at: require(key), codingPath: path(key)).unkeyedContainer()
        }

        func superDecoder() throws -> Decoder { throw Unsupported() }
        func superDecoder(forKey key: Key) throws -> Decoder { throw Unsupported() }
    }

    struct Unkeyed: UnkeyedDecodingContainer {
        let document: Document
        let codingPath: [CodingKey]
        let count: Int?
        var currentIndex = 0
        /// Tape index of the current element.
        var position: Int

        init(document: Document, at: Int, codingPath: [CodingKey]) {
            self.document = document
            self.codingPath = codingPath
            count = Int(document.tape[at].end)
            position = at + 1
        }

        var isAtEnd: Bool { currentIndex >= count! }

        func path() -> [CodingKey] { codingPath + [AnyKey(intValue: currentIndex)] }

        /// The current element's tape index, refusing null; advances past it.
        mutating func next<T>(_ type: T.Type, allowNull: Bool = false) throws -> Int {
            guard !isAtEnd else {
                throw DecodingError.valueNotFound(T.self, .init(codingPath: path(), debugDescription: "array ended at \(currentIndex)"))
            }
            let at = position
            if !allowNull && document.isNull(at) {
                throw DecodingError.valueNotFound(T.self, .init(codingPath: path(), debugDescription: "null in array"))
            }
            position = Int(document.tape[at].next)
            currentIndex += 1
            return at
        }

        mutating func decodeNil() throws -> Bool {
            guard !isAtEnd, document.isNull(position) else { return false }
            position += 1
            currentIndex += 1
            return true
        }

        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
            let path = self.path()
            return try document.value(T.self, at: next(type), path: path)
        }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
            let path = self.path()
            return try TapeDecoder(document: document, at: next(Any.self, allowNull: true), codingPath: path).container(keyedBy: type)
        }

        mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer {
            let path = self.path()
            return try TapeDecoder(document: document, at: next(Any.self, allowNull: true), codingPath: path).unkeyedContainer()
        }

        mutating func superDecoder() throws -> Decoder { throw Unsupported() }
    }

    struct Single: SingleValueDecodingContainer {
        let document: Document
        let at: Int
        let codingPath: [CodingKey]

        func decodeNil() -> Bool { document.isNull(at) }

        func decode(_ type: String.Type) throws -> String {
            guard !document.isNull(at) else { throw null(type) }
            return try document.string(at: at, path: codingPath)
        }

        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            guard !document.isNull(at) else { throw null(type) }
            return try document.value(T.self, at: at, path: codingPath)
        }

        func null<T>(_ type: T.Type) -> DecodingError {
            DecodingError.valueNotFound(T.self, .init(codingPath: codingPath, debugDescription: "null"))
        }
    }
}
