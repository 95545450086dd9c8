import DyninkaCompiler
import DyninkaSystem
@testable import DyninkaRunner
@testable import DyninkaView
import Foundation
import Testing
@testable import DyninkaDeploy

/// The adapt loop's decisions on constructed latencies.
@Suite struct AdapterTests {
    let nodes = [PlacementNode(name: "cloud", labels: ["zone": "core"]), PlacementNode(name: "edge-1", labels: ["zone": "roof"]),
                 PlacementNode(name: "edge-2", labels: ["zone": "street"])]

    /// `count` calls from `caller` to `callee`, each spending `networkMs` on the network.
    func calls(_ caller: String, _ callee: String, count: Int, networkMs: Double, tag: String = "") -> [TraceSpan] {
        var spans: [TraceSpan] = []
        for i in 0..<count {
            let start: UInt64 = 1_000_000_000 + UInt64(i) * 100_000_000
            let network = UInt64(networkMs * 1e6)
            let parent = TraceSpan(traceID: "t\(tag)\(i)", spanID: "p\(tag)\(caller)\(i)", parentID: nil, name: caller, start: start,
                                   end: start + 1_000_000 + network, function: 0, status: 200, next: callee, forwardStart: start + 500_000)
            let child = TraceSpan(traceID: "t\(tag)\(i)", spanID: "c\(tag)\(callee)\(i)", parentID: parent.spanID, name: callee,
                                  start: start + 500_000 + network / 2, end: start + 1_000_000 + network / 2, function: 0, status: 200)
            spans += [parent, child]
        }
        return spans
    }

    func adapter(_ placements: [String: PlacementIR?] = ["map": nil, "movingAvg": nil], hold: Double = 10, coolDown: Double = 60) -> Adapter {
        Adapter(policy: AdaptPolicy(thresholdMs: 5, hold: hold, coolDown: coolDown), placements: placements, nodes: nodes)
    }

    @Test func aCostlyHopMovesTheCalleeNextToItsCallerAfterTheHoldTime() throws {
        let adapt = adapter()
        let t0 = Date(timeIntervalSince1970: 1000)
        var at = ["map": "edge-1", "movingAvg": "cloud"]
        let far = calls("map", "movingAvg", count: 50, networkMs: 40)
        #expect(adapt.evaluate(far, at: at, now: t0).decisions.isEmpty, "not for the hold time yet")
        #expect(adapt.evaluate(far, at: at, now: t0 + 5).decisions.isEmpty)
        let decided = adapt.evaluate(far, at: at, now: t0 + 10).decisions
        try #require(decided.count == 1)
        #expect(decided[0].service == "movingAvg" && decided[0].from == "cloud" && decided[0].to == "edge-1" && decided[0].caller == "map")
        #expect(abs(decided[0].medianMs - 40) < 0.01)
        #expect(decided[0].description.contains("the hop map → movingAvg spent 40.0 ms on the network (median, threshold 5.0 ms) for 10 s"))
        // Moved: the hop is local and cheap; nothing more happens, however long it runs.
        at["movingAvg"] = "edge-1"
        let near = calls("map", "movingAvg", count: 50, networkMs: 0.1)
        for t in stride(from: 15.0, through: 300, by: 5) { #expect(adapt.evaluate(near, at: at, now: t0 + t).decisions.isEmpty) }
    }

    @Test func aCheapHopOrTooFewSamplesMoveNothing() {
        let adapt = adapter()
        let t0 = Date(timeIntervalSince1970: 1000)
        let at = ["map": "edge-1", "movingAvg": "cloud"]
        for t in stride(from: 0.0, through: 60, by: 5) {
            #expect(adapt.evaluate(calls("map", "movingAvg", count: 50, networkMs: 3), at: at, now: t0 + t).decisions.isEmpty)
            #expect(adapt.evaluate(calls("map", "movingAvg", count: 5, networkMs: 40, tag: "x"), at: at, now: t0 + t).decisions.isEmpty)
        }
    }

    @Test func twoEqualCallersOnTwoNodesNeverPullTheServiceBackAndForth() {
        let adapt = adapter(["a": nil, "b": nil, "s": nil], hold: 0, coolDown: 0)
        let t0 = Date(timeIntervalSince1970: 1000)
        var at = ["a": "edge-1", "b": "edge-2", "s": "cloud"]
        let load = calls("a", "s", count: 30, networkMs: 40, tag: "a") + calls("b", "s", count: 30, networkMs: 40, tag: "b")
        var moves = 0
        for t in stride(from: 0.0, through: 120, by: 5) {
            for decision in adapt.evaluate(load, at: at, now: t0 + t).decisions {
                moves += 1
                at["s"] = decision.to
            }
        }
        #expect(moves == 1, "one move off the far node, then it stays: the other caller is as busy")
    }

    @Test func oneMoveAWindowTheCostliestHopFirst() throws {
        // get (cloud) → filter (edge-1) → map (cloud): both hops cross; get's carries three times the calls.
        let adapt = adapter(["get": nil, "filter": nil, "map": nil], hold: 0)
        var at = ["get": "cloud", "filter": "edge-1", "map": "cloud"]
        let load = calls("get", "filter", count: 60, networkMs: 40, tag: "g") + calls("filter", "map", count: 20, networkMs: 40, tag: "f")
        let first = adapt.evaluate(load, at: at).decisions
        try #require(first.count == 1)
        #expect(first[0].service == "filter" && first[0].to == "cloud")
        at["filter"] = "cloud"
        let local = calls("get", "filter", count: 60, networkMs: 0.1, tag: "g") + calls("filter", "map", count: 20, networkMs: 0.1, tag: "f")
        #expect(adapt.evaluate(local, at: at).decisions.isEmpty, "map's caller is on its node now: nothing else moves")
    }

    @Test func theCoolDownHoldsAServiceThatJustMoved() throws {
        let adapt = adapter(["a": nil, "b": nil, "s": nil], hold: 0, coolDown: 60)
        let t0 = Date(timeIntervalSince1970: 1000)
        var at = ["a": "edge-1", "b": "edge-2", "s": "cloud"]
        let first = adapt.evaluate(calls("a", "s", count: 30, networkMs: 40), at: at, now: t0).decisions
        try #require(first.count == 1 && first[0].to == "edge-1")
        at["s"] = "edge-1"
        // Now b is busier; the service waits out its cool-down, says why once, then follows.
        let shifted = calls("b", "s", count: 40, networkMs: 40, tag: "b") + calls("a", "s", count: 10, networkMs: 0.1, tag: "a")
        let held = adapt.evaluate(shifted, at: at, now: t0 + 20)
        #expect(held.decisions.isEmpty)
        #expect(held.notes.count == 1 && held.notes[0].contains("cool-down 60 s"), "\(held.notes)")
        #expect(adapt.evaluate(shifted, at: at, now: t0 + 30).notes.isEmpty, "the same reason is not repeated")
        #expect(adapt.evaluate(shifted, at: at, now: t0 + 61).decisions.first?.to == "edge-2")
    }

    @Test func placementPinsAndLabelsAreRespected() {
        let pinned = adapter(["map": nil, "movingAvg": PlacementIR(node: "cloud")], hold: 0)
        let at = ["map": "edge-1", "movingAvg": "cloud"]
        let result = pinned.evaluate(calls("map", "movingAvg", count: 50, networkMs: 40), at: at)
        #expect(result.decisions.isEmpty)
        #expect(result.notes.first?.contains("asks for node cloud: it stays on cloud") == true, "\(result.notes)")
        let labelled = adapter(["map": nil, "movingAvg": PlacementIR(label: "zone=core")], hold: 0)
        let refused = labelled.evaluate(calls("map", "movingAvg", count: 50, networkMs: 40), at: at)
        #expect(refused.decisions.isEmpty)
        #expect(refused.notes.first?.contains("edge-1 does not fit movingAvg's placement (label zone=core)") == true, "\(refused.notes)")
        let down = adapter(hold: 0).evaluate(calls("map", "movingAvg", count: 50, networkMs: 40), at: at, down: ["edge-1"])
        #expect(down.decisions.isEmpty && down.notes.first?.contains("edge-1 is down") == true)
    }
}

/// What a move reads of the old node: the handshakes to the service's address still under way.
@Suite struct MoveHandshakeTests {
    /// Lines as /proc/net/tcp writes them (10.77.1.12:8080 is 0C014D0A:1F90 on this machine).
    let table = """
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 0C014D0A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
           9: 0A024D0A:1F90 02014D0A:E1DC 03 00000000:00000000 01:00000063 00000000     0        0 0 0 000000001acfb17e
          43: 0C014D0A:1F90 02014D0A:DABE 03 00000000:00000000 01:0000000B 00000001     0        0 0 0 000000006ca1bf68
          46: 0C014D0A:1F90 02014D0A:DACC 03 00000000:00000000 01:0000000B 00000001     0        0 0 0 00000000072c3e4a
          53: 0C014D0A:1F90 02014D0A:988C 06 00000000:00000000 03:00000FA3 00000000     0        0 0 3 00000000b4827259
        10053: 02014D0A:988C 0C014D0A:1F90 03 00000000:00000000 01:0000000B 00000001     0        0 0 0 00000000072c3e4a
        10054: 0C014D0A:1F91 02014D0A:988C 03 00000000:00000000 01:0000000B 00000001     0        0 0 0 00000000072c3e4a
        """

    @Test func onlySynRecvEntriesOfTheAddressAndPortCount() {
        #expect(ProcNet.procAddress("10.77.1.12", port: 8080) == "0C014D0A:1F90")
        #expect(ProcNet.procAddress("127.0.0.1", port: 80) == "0100007F:0050")
        let bytes = Array(table.utf8)
        // Two SYN_RECV to 10.77.1.12:8080; not the listener (0A), a TIME_WAIT (06), another
        // address, the address as the remote end, or another port.
        #expect(ProcNet.handshakes(in: bytes, address: "10.77.1.12", port: 8080) == 2)
        #expect(ProcNet.handshakes(in: bytes, address: "10.77.2.10", port: 8080) == 1)
        #expect(ProcNet.handshakes(in: bytes, address: "10.77.1.12", port: 8081) == 1)
        #expect(ProcNet.handshakes(in: bytes, address: "10.77.1.13", port: 8080) == 0)
        #expect(ProcNet.handshakes(in: Array(table.utf8.prefix(200)), address: "10.77.1.12", port: 8080) == 0)
    }
}

/// What `dyninka run --watch` does with a saved edit, decided from the two IRs.
@Suite struct SwapPlanTests {
    @Test func anEditOfOneFunctionSwapsOnlyIt() throws {
        let before = try ir("SmartBuilding")
        let after = try ir("SmartBuilding", edit: { $0.replacingOccurrences(of: "Temperature(value: value)", with: "Temperature(value: value + 0)") })
        let plan = SwapPlan(from: before, to: after)
        #expect(plan.changed == ["map"] && plan.added.isEmpty && plan.removed.isEmpty && plan.rerouted.isEmpty, "\(plan)")
        #expect(SwapPlan(from: before, to: before).isEmpty)
    }

    @Test func aServiceAddedToTheChainSwapsEveryServiceWhoseRouteNamesIt() throws {
        let before = try ir("SmartBuilding")
        let after = try ir("SmartBuilding", edit: { source in
            source.replacingOccurrences(of: "?.map().movingAvg()", with: "?.map().calibrate().movingAvg()")
                .replacingOccurrences(of: "extension Temperature {", with: "extension Temperature {\n    @Service func calibrate() -> Temperature { Temperature(value: value - 0.5) }")
        })
        let plan = SwapPlan(from: before, to: after)
        #expect(plan.added == ["calibrate"])
        // get, filterTemperature and map have calibrate in their routes now; movingAvg does not.
        #expect(Set(plan.changed) == ["get", "filterTemperature", "map"], "\(plan)")
        #expect(plan.callingAdded["get"] == ["calibrate"] && plan.callingAdded["movingAvg"] == nil)
    }

    @Test func callsAreReadWithTheRouteParserNotByTextSearch() throws {
        // assess(weather: weather(), threshold: 26.0): its parameters are weather and threshold.
        var service = try #require(try ir("BuildingAlerts").service("assess"))
        try #require(service.parameters.count == 2)
        service.defaultRoute = "alert()"
        service.parameters[0].defaultArgument = #""map() is not a call here""#
        service.parameters[1].defaultArgument = "26.0"
        #expect(SwapPlan.called(by: service) == ["alert"])
        service.parameters[0].defaultArgument = "weather().calibrate()"
        #expect(SwapPlan.called(by: service) == ["alert", "weather", "calibrate"])
    }
}
