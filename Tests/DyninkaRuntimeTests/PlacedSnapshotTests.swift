import CDyninkaABI
import Foundation
import Testing
@testable import DyninkaRuntime

/// A placed value whose type cannot be encoded.
final class Handle { var fd: Int32 = 3 }

/// Snapshot and restore of @Placed state (ABI 3), through the same entry points the table exports.
@Suite struct PlacedSnapshotTests {
    /// Snapshot from one set of variables, restore into another, as two builds would.
    func move(_ from: [PlacedSnapshot.Variable], _ to: [PlacedSnapshot.Variable]) -> (status: Int32, json: String, message: String) {
        var data: UnsafeMutablePointer<UInt8>?
        var length = 0
        let status = PlacedSnapshot.snapshot(from, &data, &length)
        let json = String(decoding: UnsafeBufferPointer(start: data, count: length), as: UTF8.self)
        guard status == Int32(DYNINKA_STATUS_OK.rawValue) else { free(data); return (status, "", json) }
        var message: UnsafeMutablePointer<UInt8>?
        var messageLength = 0
        let restored = PlacedSnapshot.restore(to, data, length, &message, &messageLength)
        free(data)
        let text = message.map { String(decoding: UnsafeBufferPointer(start: $0, count: messageLength), as: UTF8.self) } ?? ""
        free(message)
        return (restored, json, text)
    }

    @Test func everyCodableKindRoundTripsExactly() {
        struct Window: Codable, Equatable { var sum: Double; var values: [Double] }
        let count = PlacedState(41), average = PlacedState(18.978333333333335), name = PlacedState("roof"), on = PlacedState(true)
        let list = PlacedState([1, 2, 3]), map = PlacedState(["a": 0.1, "b": 1e-300]), window = PlacedState(Window(sum: 3.5, values: [1, 2.5]))
        let maybe = PlacedState<Int?>(nil), big = PlacedState(Int64.max)
        let count2 = PlacedState(0), average2 = PlacedState(0.0), name2 = PlacedState(""), on2 = PlacedState(false)
        let list2 = PlacedState([Int]()), map2 = PlacedState([String: Double]()), window2 = PlacedState(Window(sum: 0, values: []))
        let maybe2 = PlacedState<Int?>(7), big2 = PlacedState(Int64(0))
        let moved = move(
            [PlacedSnapshot.variable("count", count), PlacedSnapshot.variable("average", average), PlacedSnapshot.variable("name", name), PlacedSnapshot.variable("on", on), PlacedSnapshot.variable("list", list),
             PlacedSnapshot.variable("map", map), PlacedSnapshot.variable("window", window), PlacedSnapshot.variable("maybe", maybe), PlacedSnapshot.variable("big", big)],
            [PlacedSnapshot.variable("count", count2), PlacedSnapshot.variable("average", average2), PlacedSnapshot.variable("name", name2), PlacedSnapshot.variable("on", on2), PlacedSnapshot.variable("list", list2),
             PlacedSnapshot.variable("map", map2), PlacedSnapshot.variable("window", window2), PlacedSnapshot.variable("maybe", maybe2), PlacedSnapshot.variable("big", big2)])
        #expect(moved.status == Int32(DYNINKA_STATUS_OK.rawValue), "\(moved.message)")
        #expect(moved.json.hasPrefix(#"{"count":41,"average":18.978333333333335,"name":"roof","on":true"#), "\(moved.json)")
        #expect(count2.value == 41 && average2.value == 18.978333333333335 && name2.value == "roof" && on2.value)
        #expect(list2.value == [1, 2, 3] && map2.value == ["a": 0.1, "b": 1e-300] && window2.value == window.value)
        #expect(maybe2.value == nil && big2.value == Int64.max)
    }

    @Test func aMismatchIsRefusedAndChangesNothing() {
        let count = PlacedState(3), average = PlacedState(2.5)
        let count2 = PlacedState(0), average2 = PlacedState("x")
        let moved = move([PlacedSnapshot.variable("count", count), PlacedSnapshot.variable("average", average)],
                         [PlacedSnapshot.variable("count", count2), PlacedSnapshot.variable("average", average2)])
        #expect(moved.status == Int32(DYNINKA_STATUS_BAD_INPUT.rawValue))
        #expect(moved.message.contains("the snapshot does not fit this build's state"), "\(moved.message)")
        #expect(count2.value == 0 && average2.value == "x", "all or nothing: count was not set either")
        let missing = move([PlacedSnapshot.variable("count", count)], [PlacedSnapshot.variable("count", PlacedState(0)), PlacedSnapshot.variable("total", PlacedState(0))])
        #expect(missing.status == Int32(DYNINKA_STATUS_BAD_INPUT.rawValue) && missing.message.contains("missing key 'total'"), "\(missing.message)")
    }

    @Test func aValueThatIsNotCodableSaysItCannotMove() {
        let moved = move([PlacedSnapshot.variable("handle", PlacedState(Handle()))], [])
        #expect(moved.status == Int32(DYNINKA_STATUS_FUNCTION_ERROR.rawValue))
        #expect(moved.message.contains("@Placed var handle is a Handle, which is not Codable, so it cannot move"), "\(moved.message)")
    }
}
