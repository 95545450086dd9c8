@testable import DyninkaView
import Foundation
import Testing

/// The adapt loop's fusion decisions on constructed spans: fuse a costly hop of one node, keep it
/// when the tail does not suffer, take it back when it does.
@Suite struct FusionAdapterTests {
    /// `count` requests that begin at `caller` (the entry) and call `callee`, each hop spending
    /// `networkMs` on the network; each request takes `extraMs` more at the entry.
    func requests(_ caller: String, _ callee: String, count: Int, networkMs: Double, extraMs: Double = 0, tag: String = "") -> [TraceSpan] {
        (0..<count).flatMap { i -> [TraceSpan] in
            let start: UInt64 = 1_000_000_000 + UInt64(i) * 100_000_000
            let network = UInt64(networkMs * 1e6)
            let parent = TraceSpan(traceID: "t\(tag)\(i)", spanID: "p\(tag)\(i)", parentID: nil, name: caller, start: start,
                                   end: start + 1_000_000 + network + UInt64(extraMs * 1e6), function: 0, status: 200, next: callee,
                                   forwardStart: start + 500_000)
            let child = TraceSpan(traceID: "t\(tag)\(i)", spanID: "c\(tag)\(i)", parentID: parent.spanID, name: callee,
                                  start: start + 500_000 + network / 2, end: start + 1_000_000 + network / 2, function: 0, status: 200)
            return [parent, child]
        }
    }

    func adapter(isolated: Set<String> = []) -> FusionAdapter {
        FusionAdapter(policy: FusionPolicy(thresholdMs: 1, hold: 10, judge: 10, coolDown: 120), isolated: isolated, entry: "map")
    }

    let apart = [["map"], ["movingAvg"]]
    let t0 = Date(timeIntervalSince1970: 1000)

    @Test func aCostlyHopOfOneNodeIsFusedAfterTheHoldTime() throws {
        let adapt = adapter()
        let costly = requests("map", "movingAvg", count: 50, networkMs: 2)
        #expect(adapt.evaluate(costly, groups: apart, now: t0).decisions.isEmpty, "not for the hold time yet")
        let decided = adapt.evaluate(costly, groups: apart, now: t0 + 10).decisions
        try #require(decided.count == 1)
        #expect(decided[0].groups == [["map", "movingAvg"]])
        #expect(decided[0].description.contains("fusing map → movingAvg into one host (map,movingAvg): the hop spent 2.00 ms on the network (median of 50)"))
    }

    @Test func cheapHopsOtherNodesAndIsolatedServicesAreNotFused() {
        let cheap = adapter()
        let far = adapter()
        let alone = adapter(isolated: ["movingAvg"])
        for t in stride(from: 0.0, through: 60, by: 5) {
            #expect(cheap.evaluate(requests("map", "movingAvg", count: 50, networkMs: 0.3), groups: apart, now: t0 + t).decisions.isEmpty)
            #expect(far.evaluate(requests("map", "movingAvg", count: 50, networkMs: 20), groups: apart,
                                 node: ["map": "edge-1", "movingAvg": "cloud"], now: t0 + t).decisions.isEmpty)
            #expect(alone.evaluate(requests("map", "movingAvg", count: 50, networkMs: 20), groups: apart, now: t0 + t).decisions.isEmpty)
        }
        let notes = alone.evaluate(requests("map", "movingAvg", count: 50, networkMs: 20), groups: apart, now: t0 + 100).notes
            + adapter(isolated: ["movingAvg"]).evaluate(requests("map", "movingAvg", count: 50, networkMs: 20), groups: apart, now: t0).notes
        #expect(notes.contains { $0.contains("movingAvg is isolated") }, "\(notes)")
    }

    @Test func aFusionThatMakesTheTailWorseIsTakenBackAndNotRetriedDuringTheCoolDown() throws {
        let adapt = adapter()
        let costly = requests("map", "movingAvg", count: 50, networkMs: 2)
        _ = adapt.evaluate(costly, groups: apart, now: t0)
        let fuse = adapt.evaluate(costly, groups: apart, now: t0 + 10).decisions
        try #require(fuse.count == 1)
        let fused = [["map", "movingAvg"]]
        // Fused: no hop any more, but every request takes 5 ms longer at the entry.
        let worse = requests("map", "movingAvg", count: 50, networkMs: 0, extraMs: 5, tag: "w").filter { $0.name == "map" }
        #expect(adapt.evaluate(worse, groups: fused, now: t0 + 15).decisions.isEmpty, "judged after 10 s")
        let back = adapt.evaluate(worse, groups: fused, now: t0 + 20).decisions
        try #require(back.count == 1)
        #expect(back[0].groups == apart)
        #expect(back[0].description.contains("splitting map → movingAvg again: the entry's p99 went from 3.00 ms to 6.00 ms fused"), "\(back[0])")
        // Apart again and as costly as before: not fused again within the cool-down.
        for t in stride(from: 25.0, through: 130, by: 5) { #expect(adapt.evaluate(costly, groups: apart, now: t0 + t).decisions.isEmpty) }
        #expect(adapt.evaluate(costly, groups: apart, now: t0 + 160).decisions.isEmpty, "the hold starts again after the cool-down")
        #expect(!adapt.evaluate(costly, groups: apart, now: t0 + 170).decisions.isEmpty, "after the cool-down and the hold")
    }

    @Test func aFusionThatHelpsIsKept() throws {
        let adapt = adapter()
        let costly = requests("map", "movingAvg", count: 50, networkMs: 2)
        _ = adapt.evaluate(costly, groups: apart, now: t0)
        try #require(adapt.evaluate(costly, groups: apart, now: t0 + 10).decisions.count == 1)
        let better = requests("map", "movingAvg", count: 50, networkMs: 0, tag: "b").filter { $0.name == "map" }
        let judged = adapt.evaluate(better, groups: [["map", "movingAvg"]], now: t0 + 20)
        #expect(judged.decisions.isEmpty)
        #expect(judged.notes.contains { $0.contains("keeping map → movingAvg fused") }, "\(judged.notes)")
    }
}
