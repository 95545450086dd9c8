import Foundation
import Testing
@testable import DyninkaRuntime

enum Kind: String, Codable { case temperature, humidity }
struct Inner: Codable, Equatable { var a: Int; var b: [String] }
struct Everything: Codable, Equatable {
    var text: String
    var escaped: String
    var unicode: String
    var flag: Bool
    var double: Double
    var integral: Double
    var negative: Int
    var big: Int64
    var small: UInt8
    var float: Float
    var optional: String?
    var missing: Int?
    var kind: Kind
    var inner: Inner
    var list: [Inner]
    var map: [String: Int]
    var nested: [[Double]]
    var empty: [Int]
}
struct Empty: Codable, Equatable {}
struct WithDate: Codable, Equatable { var when: Date }

let sample = Everything(
    text: "room 3.024", escaped: "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7}", unicode: "°C ☀️ 𝄞",
    flag: true, double: 0.1 + 0.2, integral: 21, negative: -42, big: Int64.max, small: 255, float: 1.5,
    optional: "here", missing: nil, kind: .humidity, inner: Inner(a: 1, b: ["x", "y"]),
    list: [Inner(a: 2, b: []), Inner(a: 3, b: ["z"])], map: ["k": 1], nested: [[1.5, -2], []], empty: [])

func fast<T: Encodable>(_ value: T) throws -> [UInt8] { try FastJSON.encode(value) }
func fastDecode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
    try bytes.withUnsafeBufferPointer { try FastJSON.decode(type, from: $0) }
}

/// The fast coder must agree with Foundation's: same values out, same values in.
@Suite struct FastJSONTests {
    @Test func roundTripsEverythingSynthesizedCodableProduces() throws {
        let bytes = try fast(sample)
        #expect(try fastDecode(Everything.self, bytes) == sample)
        #expect(try JSONDecoder().decode(Everything.self, from: Data(bytes)) == sample, "Foundation reads what we write")
        let foundation = try JSONEncoder().encode(sample)
        #expect(try fastDecode(Everything.self, Array(foundation)) == sample, "we read what Foundation writes")
    }

    @Test func numbersAreWrittenAsFoundationWritesThem() throws {
        struct N: Codable { var v: Double }
        for v in [0.0, 21.0, -3.0, 0.5, 19.285, 1e300, 18.860000000000003] {
            let ours = String(decoding: try fast(N(v: v)), as: UTF8.self)
            let theirs = String(decoding: try JSONEncoder().encode(N(v: v)), as: UTF8.self)
            #expect(ours == theirs, "\(v)")
        }
    }

    @Test func emptyTypesAndOptionalsAtTheTop() throws {
        #expect(String(decoding: try fast(Empty()), as: UTF8.self) == "{}")
        #expect(String(decoding: try fast(Optional<Int>.none), as: UTF8.self) == "null")
        #expect(try fastDecode(Int?.self, Array("null".utf8)) == nil)
        #expect(try fastDecode([Int].self, Array(" [1, 2 ,3] ".utf8)) == [1, 2, 3])
    }

    @Test func foundationOnlyTypesFallBack() {
        #expect(throws: FastJSON.Unsupported.self) { try fast(WithDate(when: Date(timeIntervalSince1970: 0))) }
        #expect(throws: FastJSON.Unsupported.self) { try fastDecode(WithDate.self, Array(#"{"when":1}"#.utf8)) }
    }

    @Test func errorsAreDecodingErrorsWithPaths() {
        struct R: Codable { var sensor: String; var value: Double }
        do {
            _ = try fastDecode(R.self, Array(#"{"value":1}"#.utf8))
            Issue.record("missing key decoded")
        } catch DecodingError.keyNotFound(let key, _) {
            #expect(key.stringValue == "sensor")
        } catch { Issue.record("\(error)") }
        do {
            _ = try fastDecode(R.self, Array(#"{"sensor":"s","value":"x"}"#.utf8))
            Issue.record("wrong type decoded")
        } catch DecodingError.typeMismatch(_, let context) {
            #expect(context.codingPath.map(\.stringValue) == ["value"])
        } catch { Issue.record("\(error)") }
    }

    @Test(arguments: ["", "{", "{\"a\":}", "[1,]", "tru", "\"unterminated", "{\"a\" 1}", "1 2", "\"\\uD800\"", "-", "{\"a\":\"\u{1}\"}"])
    func malformedJSONIsRejected(_ text: String) {
        #expect(throws: (any Error).self) { try fastDecode([String: Int].self, Array(text.utf8)) }
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: (any Error).self) { try fastDecode([Int].self, Array(deep.utf8)) }
    }

    @Test func integersAcceptIntegralNumbersAndRefuseOverflow() throws {
        #expect(try fastDecode([Int].self, Array("[1.0, 1e3]".utf8)) == [1, 1000])
        #expect(throws: (any Error).self) { try fastDecode([UInt8].self, Array("[256]".utf8)) }
        #expect(throws: (any Error).self) { try fastDecode([Int].self, Array("[1.5]".utf8)) }
    }

    @Test(arguments: ["01", "1.", ".5", "1e", "1e+", "+1", "--1", "0x10", "1.e3", "-.5"])
    func numbersFollowTheJSONGrammar(_ text: String) {
        #expect(throws: (any Error).self) { try fastDecode([Double].self, Array("[\(text)]".utf8)) }
    }

    @Test func doublesParseExactlyAsSwiftParsesThem() throws {
        // The fast path (at most 15 digits, exponent within 22) and the fallback must both agree
        // with Double(String) bit for bit.
        var generator = SystemRandomNumberGenerator()
        var texts = ["0", "-0", "0.1", "21.37", "1e22", "1e23", "9007199254740993", "123456789012345.6", "0.000001234",
                     "1.7976931348623157e308", "5e-324", "2.2250738585072014e-308", "-12.5E-3", "100e-2"]
        for _ in 0..<2000 {
            let digits = String((0..<Int.random(in: 1...19, using: &generator)).map { _ in "0123456789".randomElement(using: &generator)! })
            let point = Int.random(in: 0...digits.count, using: &generator)
            var text = point == digits.count ? digits : String(digits.prefix(point)) + "." + digits.dropFirst(point)
            if text.hasPrefix(".") { text = "0" + text }
            while text.count > 1, text.hasPrefix("0"), !text.hasPrefix("0.") { text.removeFirst() }
            if Bool.random(using: &generator) { text += "e\(Int.random(in: -30...30, using: &generator))" }
            texts.append(Bool.random(using: &generator) ? "-" + text : text)
        }
        let decoded = try fastDecode([Double].self, Array("[\(texts.joined(separator: ","))]".utf8))
        for (text, value) in zip(texts, decoded) {
            #expect(value.bitPattern == Double(text)!.bitPattern, "\(text)")
        }
    }

    @Test func integersAtTheLimits() throws {
        #expect(try fastDecode([Int64].self, Array("[-9223372036854775808, 9223372036854775807, -0]".utf8)) == [.min, .max, 0])
        #expect(try fastDecode([UInt64].self, Array("[18446744073709551615]".utf8)) == [.max])
        #expect(throws: (any Error).self) { try fastDecode([Int64].self, Array("[9223372036854775808]".utf8)) }
        #expect(throws: (any Error).self) { try fastDecode([UInt].self, Array("[-1]".utf8)) }
        #expect(throws: (any Error).self) { try fastDecode([Int8].self, Array("[-129]".utf8)) }
    }

    @Test func keysWithEscapesLargeObjectsAndNulls() throws {
        struct K: Codable, Equatable { var quoted: String; var opt: Double?; var n: Int? }
        let k = try fastDecode(K.self, Array(#"{"n":null,"qu\u006fted":"a\"b","opt":null}"#.utf8))
        #expect(k == K(quoted: "a\"b", opt: nil, n: nil))
        var big: [String: Int] = [:]
        for i in 0..<100 { big["key\(i)"] = i }
        #expect(try fastDecode([String: Int].self, try fast(big)) == big)
        let duplicate = try fastDecode([String: Int].self, Array(#"{"a":1,"b":2}"#.utf8))
        #expect(duplicate == ["a": 1, "b": 2])
        #expect(throws: DecodingError.self) { try fastDecode(K.self, Array(#"{"quoted":null}"#.utf8)) }
    }

    @Test func deepValuesAreLeftToFoundation() throws {
        final class Deep: Codable {
            let next: Deep?
            let n: Int
            init(next: Deep?, n: Int) { self.next = next; self.n = n }
        }
        var deep = Deep(next: nil, n: 0)
        for i in 1...70 { deep = Deep(next: deep, n: i) }
        #expect(throws: FastJSON.Unsupported.self) { try fast(deep) }
        let (bytes, count) = try Coding.encode(deep)
        defer { free(bytes) }
        let back = try JSONDecoder().decode(Deep.self, from: Data(bytes: bytes!, count: count))
        #expect(back.n == 70 && back.next?.n == 69)
        var shallow = Deep(next: nil, n: 0)
        for i in 1...60 { shallow = Deep(next: shallow, n: i) }
        #expect(try fastDecode(Deep.self, try fast(shallow)).n == 60)
    }
}
