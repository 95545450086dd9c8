import Foundation

/// When the adapt loop fuses an edge, and when it takes the fusion back (`dyninka run --adapt`).
package struct FusionPolicy: Sendable {
    /// A hop between two services of one node whose median network time (milliseconds) is above
    /// this costs more than calling in process would.
    package var thresholdMs: Double = 1
    /// ... for at least this long (seconds) before the two hosts become one.
    package var hold: TimeInterval = 10
    /// After a fusion, how long (seconds) the entry's p99 is watched before it is kept.
    package var judge: TimeInterval = 10
    /// The fusion is taken back when the entry's p99 after it is above this many times the p99
    /// before it, and by at least `worseByMs`.
    package var worse: Double = 1.2
    package var worseByMs: Double = 1
    /// An edge whose fusion was taken back is not fused again for this long (seconds).
    package var coolDown: TimeInterval = 120
    /// Fewer samples than this in a window say nothing.
    package var minSamples = 10

    package init(thresholdMs: Double = 1, hold: TimeInterval = 10, judge: TimeInterval = 10, worse: Double = 1.2, worseByMs: Double = 1,
                 coolDown: TimeInterval = 120, minSamples: Int = 10) {
        self.thresholdMs = thresholdMs
        self.hold = hold
        self.judge = judge
        self.worse = worse
        self.worseByMs = worseByMs
        self.coolDown = coolDown
        self.minSamples = minSamples
    }
}

/// A change of fusion the adapt loop decided, with the figures behind it.
package enum FusionDecision: Sendable, Equatable, CustomStringConvertible {
    /// Serve `caller`'s and `callee`'s groups in one host (`groups`: every group afterwards that
    /// changed, for `LocalRunner.regroup`).
    case fuse(caller: String, callee: String, medianMs: Double, samples: Int, p99BeforeMs: Double, groups: [[String]])
    /// Take a fusion back: its p99 got worse.
    case split(caller: String, callee: String, p99BeforeMs: Double, p99AfterMs: Double, groups: [[String]])

    /// The groups to hand to `LocalRunner.regroup`.
    package var groups: [[String]] {
        switch self {
        case .fuse(_, _, _, _, _, let groups), .split(_, _, _, _, let groups): groups
        }
    }

    package var description: String {
        switch self {
        case let .fuse(caller, callee, median, samples, _, groups):
            String(format: "fusing %@ → %@ into one host (%@): the hop spent %.2f ms on the network (median of %d), above the threshold",
                   caller, callee, groups.map { $0.joined(separator: ",") }.joined(separator: " "), median, samples)
        case let .split(caller, callee, before, after, _):
            String(format: "splitting %@ → %@ again: the entry's p99 went from %.2f ms to %.2f ms fused", caller, callee, before, after)
        }
    }
}

/// Fuses an edge when its hops cost too much, and takes the fusion back when the app's tail gets
/// worse. Reads the network time of each hop from the spans (the caller's wait minus the callee's
/// time, `TraceTree.network`) and the entry's p99 from the spans of requests that began there.
/// Only services of one node, none of them isolated, are fused. One change per window: a fusion
/// changes which hops exist, so the next window judges anew. Pure: fed spans, the groups and the
/// nodes; `Run` carries the changes out.
package final class FusionAdapter {
    package let policy: FusionPolicy
    private let isolated: Set<String>
    private let entry: String
    /// When each edge ("caller>callee") went above the threshold.
    private var aboveSince: [String: Date] = [:]
    /// The fusion being judged: the edge, the groups before it, the p99 before it, and when.
    private var judging: (caller: String, callee: String, before: [[String]], p99: Double, since: Date)?
    /// Edges whose fusion was taken back, and when.
    private var tookBack: [String: Date] = [:]
    private var lastNote: [String: String] = [:]

    /// `isolated`: services marked `@Service(isolated: true)`; `entry`: where clients post.
    package init(policy: FusionPolicy, isolated: Set<String>, entry: String) {
        self.policy = policy
        self.isolated = isolated
        self.entry = entry
    }

    /// The p99 (ms) of the requests that began at the entry in `spans` (nil: too few).
    func entryP99(_ spans: [TraceSpan]) -> Double? {
        let ids = Set(spans.map(\.spanID))
        let roots = spans.filter { $0.name == entry && ($0.parentID.map { !ids.contains($0) } ?? true) }.map { Double($0.duration) / 1e6 }.sorted()
        guard roots.count >= policy.minSamples else { return nil }
        return roots[min(roots.count - 1, Int(Double(roots.count) * 0.99))]
    }

    /// Looks at the spans of the last window. `groups`: the services of each host now; `node`:
    /// where each service runs (nil on one machine: all together).
    package func evaluate(_ spans: [TraceSpan], groups: [[String]], node: [String: String] = [:], now: Date = Date())
        -> (decisions: [FusionDecision], notes: [String]) {
        var notes: [String] = []
        func note(_ key: String, _ reason: String, _ text: String) {
            guard lastNote[key] != reason else { return }
            lastNote[key] = reason
            notes.append(text)
        }
        let p99 = entryP99(spans)
        // A fusion under judgement: kept, or taken back.
        if let judged = judging {
            guard now.timeIntervalSince(judged.since) >= policy.judge, let after = p99 else { return ([], notes) }
            judging = nil
            let edge = "\(judged.caller)>\(judged.callee)"
            if after > judged.p99 * policy.worse && after - judged.p99 >= policy.worseByMs {
                tookBack[edge] = now
                return ([.split(caller: judged.caller, callee: judged.callee, p99BeforeMs: judged.p99, p99AfterMs: after,
                                groups: judged.before)], notes)
            }
            notes.append(String(format: "keeping %@ → %@ fused: the entry's p99 is %.2f ms, %.2f ms before", judged.caller, judged.callee, after, judged.p99))
        }
        let groupOf = Dictionary(groups.enumerated().flatMap { index, group in group.map { ($0, index) } }, uniquingKeysWith: { a, _ in a })
        var hops: [String: (caller: String, callee: String, times: [Double])] = [:]
        for (callee, callers) in TraceTree.networkTimes(spans) {
            for (caller, times) in callers { hops["\(caller)>\(callee)"] = (caller, callee, times) }
        }
        var best: (edge: String, caller: String, callee: String, median: Double, samples: Int)?
        for (edge, hop) in hops.sorted(by: { $0.key < $1.key }) {
            guard let a = groupOf[hop.caller], let b = groupOf[hop.callee], a != b, hop.times.count >= policy.minSamples else {
                aboveSince[edge] = nil
                continue
            }
            let sorted = hop.times.sorted()
            let median = sorted[sorted.count / 2]
            guard median > policy.thresholdMs else {
                aboveSince[edge] = nil
                continue
            }
            let figures = String(format: "%@ → %@ spends %.2f ms on the network (median of %d)", hop.caller, hop.callee, median, hop.times.count)
            let members = groups[a] + groups[b]
            if let alone = members.first(where: isolated.contains) {
                note(edge, "isolated", "\(figures), but \(alone) is isolated (@Service(isolated: true)): no fusion")
                continue
            }
            if Set(members.map { node[$0] ?? "" }).count > 1 {
                note(edge, "nodes", "\(figures), but they run on different nodes: no fusion (a move may bring them together)")
                continue
            }
            if let back = tookBack[edge], now.timeIntervalSince(back) < policy.coolDown {
                note(edge, "cool-down", String(format: "%@, but its fusion was taken back %.0f s ago (cool-down %.0f s)", figures,
                                               now.timeIntervalSince(back), policy.coolDown))
                continue
            }
            let since = aboveSince[edge] ?? now
            aboveSince[edge] = since
            guard now.timeIntervalSince(since) >= policy.hold else { continue }
            if best == nil || median * Double(hop.times.count) > best!.median * Double(best!.samples) {
                best = (edge, hop.caller, hop.callee, median, hop.times.count)
            }
        }
        guard let best, let before = p99, let a = groupOf[best.caller], let b = groupOf[best.callee] else { return ([], notes) }
        aboveSince[best.edge] = nil
        judging = (best.caller, best.callee, [groups[a], groups[b]], before, now)
        return ([.fuse(caller: best.caller, callee: best.callee, medianMs: best.median, samples: best.samples, p99BeforeMs: before,
                       groups: [groups[a] + groups[b]])], notes)
    }
}
