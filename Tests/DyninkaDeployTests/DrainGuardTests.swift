import DyninkaDeploy
import Foundation
import Testing

/// What `dyninka guard` decides, pass by pass, from the nodes, the stateful units and their pods.
@Suite struct DrainGuardTests {
    let count = DrainGuard.Unit(namespace: "state", deployment: "counter-count")
    let now = Date(timeIntervalSince1970: 1_000_000)

    func pod(_ name: String, on node: String?, terminating: Bool = false, ready: Bool = true, unscheduled: String? = nil) -> DrainGuard.PodView {
        DrainGuard.PodView(namespace: "state", name: name, instance: "counter-count", node: node, terminating: terminating,
                           ready: ready, unscheduled: unscheduled)
    }

    @Test func nothingHappensWhileNoNodeIsCordoned() {
        #expect(DrainGuard.plan(cordoned: [], units: [count], pods: [pod("a", on: "cloud")], restarted: [:], now: now).isEmpty)
        // Cordoned, but another node: the pod stays.
        #expect(DrainGuard.plan(cordoned: ["edge-1"], units: [count], pods: [pod("a", on: "cloud")], restarted: [:], now: now).isEmpty)
    }

    @Test func aPodOnACordonedNodeMovesOnce() {
        let pods = [pod("a", on: "cloud")]
        #expect(DrainGuard.plan(cordoned: ["cloud"], units: [count], pods: pods, restarted: [:], now: now)
                == [.move(count, pod: "a", from: "cloud")])
        // Restarted a moment ago, no surge pod yet: no second restart.
        let again = DrainGuard.plan(cordoned: ["cloud"], units: [count], pods: pods, restarted: [count.key: now.addingTimeInterval(-5)], now: now)
        #expect(again == [.waiting(count, why: "restarted 5 s ago; no new pod yet")])
        // The restart got lost (a minute and no new pod): restart again.
        let lost = DrainGuard.plan(cordoned: ["cloud"], units: [count], pods: pods, restarted: [count.key: now.addingTimeInterval(-61)], now: now)
        #expect(lost == [.move(count, pod: "a", from: "cloud")])
    }

    @Test func aMoveUnderWayWaitsAndSaysWhy() {
        let restarted = [count.key: now.addingTimeInterval(-2)]
        let holding = DrainGuard.plan(cordoned: ["cloud"], units: [count], pods: [pod("a", on: "cloud"), pod("b", on: "edge-1", ready: false)],
                                      restarted: restarted, now: now)
        #expect(holding == [.waiting(count, why: "its new pod b on edge-1 is taking the state over")])
        let pending = DrainGuard.plan(cordoned: ["cloud"], units: [count],
                                      pods: [pod("a", on: "cloud"), pod("b", on: nil, ready: false, unscheduled: "0/4 nodes are available")],
                                      restarted: restarted, now: now)
        #expect(pending == [.waiting(count, why: "its new pod b is not scheduled: 0/4 nodes are available")])
        // A rollout someone else started counts too: no restart on top of it.
        let theirs = DrainGuard.plan(cordoned: ["cloud"], units: [count], pods: [pod("a", on: "cloud"), pod("b", on: "edge-2", ready: false)],
                                     restarted: [:], now: now)
        #expect(theirs == [.waiting(count, why: "its new pod b on edge-2 is taking the state over")])
    }

    @Test func theMoveEndsWhenTheOldPodIsGoingAndTheNewOneIsReady() {
        let restarted = [count.key: now.addingTimeInterval(-9)]
        let done = DrainGuard.plan(cordoned: ["cloud"], units: [count], pods: [pod("a", on: "cloud", terminating: true), pod("b", on: "edge-1")],
                                   restarted: restarted, now: now)
        #expect(done == [.moved(count, pod: "b", node: "edge-1")])
        // Not restarted by the guard: nothing to report.
        #expect(DrainGuard.plan(cordoned: ["cloud"], units: [count], pods: [pod("b", on: "edge-1")], restarted: [:], now: now).isEmpty)
    }

    @Test func aUnitPlacedOnTheCordonedNodeStays() {
        let pinned = DrainGuard.Unit(namespace: "state", deployment: "counter-count", pinnedTo: "cloud")
        #expect(DrainGuard.plan(cordoned: ["cloud"], units: [pinned], pods: [pod("a", on: "cloud")], restarted: [:], now: now)
                == [.pinned(pinned, node: "cloud")])
    }

    @Test func onlyTheUnitsOwnPodsInItsNamespaceCount() {
        let other = DrainGuard.PodView(namespace: "other", name: "x", instance: "counter-count", node: "cloud")
        let stateless = DrainGuard.PodView(namespace: "state", name: "y", instance: "counter-tick", node: "cloud")
        #expect(DrainGuard.plan(cordoned: ["cloud"], units: [count], pods: [other, stateless, pod("a", on: "edge-2")], restarted: [:], now: now).isEmpty)
    }
}
