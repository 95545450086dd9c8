import DyninkaHTTP
import DyninkaLoop
import DyninkaRoute

/// A request's deadline: the budget its client gave in `Dyninka-Deadline` (milliseconds left
/// when the request arrived), as a point on the loop's monotonic clock. Every role reads it the
/// same way (`Deadline.of`), refuses work that would start after it (`spent`), and passes what
/// is left on to the next hop (`append`), so a chain of hops shares one budget.
struct Deadline: Sendable, Equatable {
    /// Monotonic nanoseconds (`EventLoop.nanoseconds()`) at which the budget runs out.
    let nanoseconds: UInt64

    /// The longest budget a Dyninka-Deadline may give (a day); longer ones are cut to it.
    static let longest = 86_400_000

    init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// The deadline of a request that arrived at `started` (loop clock): nil when it gives none.
    /// Exactly one field of ASCII digits, spaces around it allowed; anything else is refused,
    /// budgets beyond a day are cut to a day.
    static func of(_ head: HTTPHead, started: UInt64) -> Result<Deadline?, RouteError> {
        guard head.has("dyninka-deadline") else { return .success(nil) }
        return parse(head.values(of: "dyninka-deadline"), from: started).map { $0 }
    }

    /// The deadline that Dyninka-Deadline `values` give for a request that arrived at `started`.
    static func parse(_ values: [String], from started: UInt64) -> Result<Deadline, RouteError> {
        guard values.count == 1 else {
            return .failure(RouteError("Dyninka-Deadline must be given once, got \(values.count) values"))
        }
        let text = values[0].utf8.drop { $0 == 32 || $0 == 9 }.reversed().drop { $0 == 32 || $0 == 9 }.reversed()
        guard !text.isEmpty, text.allSatisfy({ (48...57).contains($0) }) else {
            let shown = values[0].count > 40 ? values[0].prefix(40) + "..." : Substring(values[0])
            return .failure(RouteError("Dyninka-Deadline must be the milliseconds left as a whole number (for example 2000), got '\(shown)'"))
        }
        var milliseconds = 0
        for digit in text {
            milliseconds = milliseconds * 10 + Int(digit - 48)
            if milliseconds >= longest { milliseconds = longest; break }
        }
        return .success(Deadline(nanoseconds: started + UInt64(milliseconds) * 1_000_000))
    }

    /// Milliseconds left now; 0 once it passed.
    var millisecondsLeft: Int {
        let now = EventLoop.nanoseconds()
        return nanoseconds > now ? Int((nanoseconds - now) / 1_000_000) : 0
    }

    /// Whether no whole millisecond is left: work that would start now is refused.
    var passed: Bool { millisecondsLeft == 0 }

    /// The 504 of `service` when the budget ran out before `what` (nothing started).
    static func spent(_ service: String, before what: String) -> ServiceFailure {
        ServiceFailure(service: service, kind: .timeout, message: "the request's deadline passed before \(what); not started")
    }

    /// Writes the budget left for the next hop, `Dyninka-Deadline: MS`; returns where in `head`
    /// the digits are (what an app hop's signature covers).
    @discardableResult
    static func append(milliseconds: Int, to head: ByteStore) -> Range<Int> {
        head.append("Dyninka-Deadline: ")
        let start = head.count
        head.append(decimal: max(milliseconds, 0))
        let end = head.count
        head.append("\r\n")
        return start..<end
    }
}
