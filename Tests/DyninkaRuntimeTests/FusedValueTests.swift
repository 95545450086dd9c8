import CDyninkaABI
import Foundation
import Synchronization
import Testing
@testable import DyninkaRuntime

/// Counts how often any `Counted` value is encoded or decoded.
let codingCount = Atomic(0)

/// A value whose encoding and decoding are counted: a fused boundary must do neither.
struct Counted: Codable, Sendable, Equatable {
    var value: Double
    init(value: Double) { self.value = value }
    init(from decoder: any Decoder) throws {
        codingCount.add(1, ordering: .relaxed)
        value = try decoder.singleValueContainer().decode(Double.self)
    }
    func encode(to encoder: any Encoder) throws {
        codingCount.add(1, ordering: .relaxed)
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}

/// What a completion brought back: a status with bytes, or a value.
final class Outcome: @unchecked Sendable {
    var status: Int32 = -1
    var bytes: [UInt8] = []
    var value: UnsafeMutableRawPointer?
}

/// Typed values between fused stages (ABI 4): a stage asked for a value completes with the Swift
/// value in a box, and the next stage takes it as its input, with nothing encoded or decoded.
@Suite(.serialized) struct FusedValueTests {
    /// Runs a synchronous service the way generated glue does: `body` gets the call's inputs.
    func run(input: [UInt8] = [], inputValue: UnsafeMutableRawPointer? = nil, wantValue: Bool,
             _ body: (CallInputs) throws -> Counted?) -> Outcome {
        let outcome = Outcome()
        input.withUnsafeBufferPointer { buffer in
            var call = dyninka_call(
                input: dyninka_bytes(data: buffer.baseAddress, length: buffer.count), arguments: nil, argument_count: 0,
                context: Unmanaged.passUnretained(outcome).toOpaque(),
                complete: { context, status, data, length in
                    let outcome = Unmanaged<Outcome>.fromOpaque(context!).takeUnretainedValue()
                    outcome.status = status
                    outcome.bytes = Array(UnsafeBufferPointer(start: data, count: length))
                    free(data)
                },
                input_value: inputValue, want_value: wantValue ? 1 : 0,
                complete_value: { context, value in
                    let outcome = Unmanaged<Outcome>.fromOpaque(context!).takeUnretainedValue()
                    outcome.status = Int32(DYNINKA_STATUS_OK.rawValue)
                    outcome.value = value
                })
            withUnsafePointer(to: &call) { ServiceCall.run($0, body) }
        }
        return outcome
    }

    @Test func aValuePassesBetweenStagesWithoutBeingEncoded() throws {
        codingCount.store(0, ordering: .relaxed)
        let first = run(input: Array("20.5".utf8), wantValue: true) { inputs in
            Counted(value: try inputs.input(Counted.self).value * 2)
        }
        #expect(codingCount.load(ordering: .relaxed) == 1, "the first stage decodes its JSON input once")
        let value = try #require(first.value, "the first stage completed with bytes, not a value")
        let second = run(inputValue: value, wantValue: false) { inputs in
            Counted(value: try inputs.input(Counted.self).value + 1)
        }
        #expect(second.status == Int32(DYNINKA_STATUS_OK.rawValue))
        #expect(String(decoding: second.bytes, as: UTF8.self) == "42.0" || String(decoding: second.bytes, as: UTF8.self) == "42")
        // The first stage's output was never encoded and the second's input never decoded: the
        // one encoding is the second stage's output, which leaves the process.
        #expect(codingCount.load(ordering: .relaxed) == 2)
    }

    @Test func aValueOfTheWrongTypeIsBadInputNotACrash() throws {
        let first = run(input: Array("1".utf8), wantValue: true) { inputs in try inputs.input(Counted.self) }
        let value = try #require(first.value)
        let second = run(inputValue: value, wantValue: false) { inputs in Counted(value: Double(try inputs.input(Int.self))) }
        #expect(second.status == Int32(DYNINKA_STATUS_BAD_INPUT.rawValue))
        #expect(String(decoding: second.bytes, as: UTF8.self).contains("not a Int"), "\(String(decoding: second.bytes, as: UTF8.self))")
    }

    @Test func nilAndErrorsStillCompleteAsBytes() {
        let dropped = run(input: Array("1".utf8), wantValue: true) { _ in nil }
        #expect(dropped.status == Int32(DYNINKA_STATUS_NIL.rawValue) && dropped.value == nil)
        struct Broken: Error {}
        let threw = run(input: Array("1".utf8), wantValue: true) { _ in throw Broken() }
        #expect(threw.status == Int32(DYNINKA_STATUS_FUNCTION_ERROR.rawValue) && threw.value == nil)
    }

    @Test func aValueNobodyTakesIsReleasedThroughTheTable() throws {
        weak var observed: AnyObject?
        do {
            let first = run(input: Array("3".utf8), wantValue: true) { inputs in try inputs.input(Counted.self) }
            let value = try #require(first.value)
            observed = Unmanaged<AnyObject>.fromOpaque(value).takeUnretainedValue()
            #expect(observed != nil)
            let table = ServiceTable(appName: "T", entryService: "x", services: [])
            let release = table.pointer.assumingMemoryBound(to: dyninka_table.self).pointee.release_value
            release?(value)
        }
        #expect(observed == nil, "the box outlived its release")
    }
}
