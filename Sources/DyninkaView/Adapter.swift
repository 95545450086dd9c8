import DyninkaCompiler
import DyninkaSystem
import Foundation

/// When the adapt loop moves a service (`dyninka run --testbed FILE --adapt`).
package struct AdaptPolicy: Sendable {
    /// A cross-node hop whose median network time (milliseconds) is above this costs too much.
    package var thresholdMs: Double = 5
    /// ... for at least this long (seconds) before the callee moves.
    package var hold: TimeInterval = 10
    /// After a move, the service stays where it is for this long (seconds): no flapping.
    package var coolDown: TimeInterval = 60
    /// Fewer hops than this in a window say nothing.
    package var minSamples = 10

    package init(thresholdMs: Double = 5, hold: TimeInterval = 10, coolDown: TimeInterval = 60, minSamples: Int = 10) {
        self.thresholdMs = thresholdMs
        self.hold = hold
        self.coolDown = coolDown
        self.minSamples = minSamples
    }
}

/// One move the adapt loop decided, with the figures behind it.
package struct AdaptDecision: Sendable, Equatable, CustomStringConvertible {
    package var service: String
    package var from: String
    package var to: String
    /// The busiest caller, next to which the service moves, and its share of the calls.
    package var caller: String
    package var calls: Int
    package var totalCalls: Int
    /// Median network time of the caller's hops to the service (ms), and over how long it stayed
    /// above the threshold (s).
    package var medianMs: Double
    package var thresholdMs: Double
    package var above: TimeInterval

    package var description: String {
        String(format: "moving %@ from %@ to %@, next to its busiest caller %@ (%d of its %d calls): the hop %@ → %@ spent %.1f ms on the network (median, threshold %.1f ms) for %.0f s",
               service, from, to, caller, calls, totalCalls, caller, service, medianMs, thresholdMs, above)
    }
}

/// Context-aware placement: reads the network time of every hop from the spans (the caller's wait
/// minus the callee's time, `TraceTree.network`) and moves a service next to its busiest caller
/// when that caller's hops to it cross nodes and cost more than the threshold for the hold time.
/// A move must make more calls local than it makes remote (so two equal callers on two nodes never
/// pull a service back and forth), must respect the service's `@Service(node:label:)`, and after
/// it the service stays put for the cool-down. Pure: fed spans and where services run; `Run`
/// carries out the moves.
package final class Adapter {
    package let policy: AdaptPolicy
    private let placements: [String: PlacementIR?]
    private let nodes: [PlacementNode]
    /// When each service's busiest-caller hop went above the threshold (nil: it is not).
    private var aboveSince: [String: Date] = [:]
    private var lastMove: [String: Date] = [:]
    /// The last reason given for not moving each service, so that it is said once, not every window.
    private var lastNote: [String: String] = [:]

    /// `placements`: each service's `@Service(node:label:near:)`; only these services may move.
    package init(policy: AdaptPolicy, placements: [String: PlacementIR?], nodes: [PlacementNode]) {
        self.policy = policy
        self.placements = placements
        self.nodes = nodes
    }

    /// Looks at the spans of the last window. `at`: the node each service runs on now; `down`:
    /// nodes that are down. Returns the move to make (at most one: the costliest hop's callee)
    /// and notes about moves it holds back (each reason said once).
    package func evaluate(_ spans: [TraceSpan], at: [String: String], down: Set<String> = [], now: Date = Date())
        -> (decisions: [AdaptDecision], notes: [String]) {
        // For each callee: calls by caller, and the network times of those calls.
        let calls = TraceTree.networkTimes(spans)
        var decisions: [AdaptDecision] = []
        var notes: [String] = []
        // Said when the reason changes, not every window (the figures in it change every window).
        func note(_ service: String, _ reason: String, _ text: String) {
            guard lastNote[service] != reason else { return }
            lastNote[service] = reason
            notes.append(text)
        }
        for (service, callers) in calls.sorted(by: { $0.key < $1.key }) {
            guard let placement = placements[service], let here = at[service] else { continue }
            // The busiest caller; on a tie, one on this service's node (so a tie never moves it).
            guard let (caller, times) = callers.max(by: { a, b in
                a.value.count != b.value.count ? a.value.count < b.value.count : (at[a.key] == here ? 1 : 0) > (at[b.key] == here ? 1 : 0)
            }), let there = at[caller] else { continue }
            let total = callers.values.reduce(0) { $0 + $1.count }
            guard there != here, times.count >= policy.minSamples else {
                aboveSince[service] = nil
                continue
            }
            let sorted = times.sorted()
            let median = sorted[sorted.count / 2]
            guard median > policy.thresholdMs else {
                aboveSince[service] = nil
                continue
            }
            let since = aboveSince[service] ?? now
            aboveSince[service] = since
            guard now.timeIntervalSince(since) >= policy.hold else { continue }
            let local = callers.filter { at[$0.key] == here }.values.reduce(0) { $0 + $1.count }
            let figures = String(format: "%@ → %@ spends %.1f ms on the network (median of %d)", caller, service, median, times.count)
            if let placement, placement.node != nil {
                note(service, "pinned", "\(figures), but \(service) asks for \(Placement.describe(placement)): it stays on \(here)")
                continue
            }
            guard Placement.candidates(placement, among: nodes).contains(where: { $0.name == there }) else {
                note(service, "placement \(there)", "\(figures), but \(there) does not fit \(service)'s placement (\(Placement.describe(placement))): it stays on \(here)")
                continue
            }
            guard !down.contains(there) else {
                note(service, "down \(there)", "\(figures), but \(there) is down: \(service) stays on \(here)")
                continue
            }
            guard times.count > local else {
                note(service, "local \(there)", "\(figures), but as many calls come from \(here) (\(local)): moving would not make more calls local; \(service) stays")
                continue
            }
            if let moved = lastMove[service], now.timeIntervalSince(moved) < policy.coolDown {
                note(service, "cool-down", String(format: "%@, but %@ moved %.0f s ago (cool-down %.0f s): it stays on %@ for now",
                                     figures, service, now.timeIntervalSince(moved), policy.coolDown, here))
                continue
            }
            decisions.append(AdaptDecision(service: service, from: here, to: there, caller: caller, calls: times.count, totalCalls: total,
                                           medianMs: median, thresholdMs: policy.thresholdMs, above: now.timeIntervalSince(since)))
        }
        // One move per window, the costliest hop first: a move changes which hops cross nodes,
        // so the next window judges the rest anew.
        guard let chosen = decisions.max(by: { Double($0.calls) * $0.medianMs < Double($1.calls) * $1.medianMs }) else { return ([], notes) }
        lastMove[chosen.service] = now
        aboveSince[chosen.service] = nil
        lastNote[chosen.service] = nil
        return ([chosen], notes)
    }
}
