#if canImport(Glibc)
import Glibc
#endif
import DyninkaLoop
import Foundation

/// Severity of a log line.
package enum LogLevel: Int, Comparable, Sendable, CaseIterable {
    case debug, info, warning, error

    package init?(name: String) {
        guard let level = LogLevel.allCases.first(where: { "\($0)" == name.lowercased() }) else { return nil }
        self = level
    }

    package static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// Line-oriented logging to standard error: `TIME LEVEL [service] message`.
///
/// Logging never holds up the caller (the event loop) for long: a line that standard error cannot
/// take at once (a full pipe, a stalled terminal) is dropped and counted, and the count is reported
/// with the next line written. Warnings and errors are rate-limited: the same message at most
/// once per `repeatWindow`, and at most `burst` lines a second in all; what was held back is
/// counted and reported too.
package struct Log: Sendable {
    package var service: String
    package var level: LogLevel
    private let limiter: LogLimiter
    /// The file descriptor written to (standard error; tests pass a pipe).
    private let descriptor: Int32

    package init(service: String, level: LogLevel, descriptor: Int32 = 2,
                 repeatWindow: Double = 10, burst: Int = 50) {
        self.service = service
        self.level = level
        self.descriptor = descriptor
        limiter = LogLimiter(repeatWindow: repeatWindow, burst: burst)
    }

    package func debug(_ message: @autoclosure () -> String) { write(.debug, message, limited: false) }
    package func info(_ message: @autoclosure () -> String) { write(.info, message, limited: false) }
    package func warning(_ message: @autoclosure () -> String) { write(.warning, message, limited: true) }
    package func error(_ message: @autoclosure () -> String) { write(.error, message, limited: true) }

    /// Lines held back so far (rate limit) and dropped (standard error not writable).
    package var suppressed: (limited: Int, dropped: Int) { limiter.totals }

    private func write(_ severity: LogLevel, _ message: () -> String, limited: Bool) {
        guard severity >= level else { return }
        let text = message()
        let now = EventLoop.seconds()
        var note = ""
        if limited {
            guard let held = limiter.admit(text, at: now) else { return }
            if held.repeats > 0 { note = " (repeated \(held.repeats) more time\(held.repeats == 1 ? "" : "s") since it was last written)" }
            if held.others > 0 { note += " (\(held.others) other line\(held.others == 1 ? "" : "s") held back: more than \(limiter.burst) a second)" }
        }
        let dropped = limiter.takeDropped()
        if dropped > 0 { note += " (\(dropped) log line\(dropped == 1 ? "" : "s") dropped: standard error was not writable)" }
        var stamp = timespec()
        clock_gettime(CLOCK_REALTIME, &stamp)
        var t = time_t(stamp.tv_sec)
        var parts = tm()
        gmtime_r(&t, &parts)
        let time = String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1,
                          parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec, Int(stamp.tv_nsec / 1_000_000))
        var line = "\(time) \(severity) [\(service)] \(text)\(note)\n"
        // Only when the descriptor can take the line now: one write(2) per line keeps lines from
        // concurrent processes whole, and a reader that stopped reading never blocks the loop.
        var ready = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
        guard poll(&ready, 1, 0) == 1, ready.revents & Int16(POLLOUT) != 0 else {
            return limiter.countDropped(1, restoring: dropped)
        }
        let written = line.withUTF8 { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        if written < 0 { limiter.countDropped(1, restoring: dropped) }
    }
}

/// The state behind a log's rate limit, shared by its copies.
private final class LogLimiter: @unchecked Sendable {
    // Guarded by `lock`: the loop thread logs, and so may the threads the app library uses.
    private let lock = NSLock()
    private let repeatWindow: Double
    let burst: Int
    /// For each recent message: when it was last written, and how often it was held back since.
    private var recent: [String: (last: Double, held: Int)] = [:]
    private var second = 0.0
    private var linesThisSecond = 0
    /// Lines held back by the per-second budget, reported with the next line written.
    private var heldByBudget = 0
    private var dropped = 0
    private var totalHeld = 0
    private var totalDropped = 0

    init(repeatWindow: Double, burst: Int) {
        self.repeatWindow = repeatWindow
        self.burst = burst
    }

    /// Whether `message` may be written now: nil when held back, else how many of its repeats
    /// and how many other lines (over the budget) were held back since.
    func admit(_ message: String, at now: Double) -> (repeats: Int, others: Int)? {
        lock.lock()
        defer { lock.unlock() }
        if now - second >= 1 {
            second = now
            linesThisSecond = 0
        }
        var entry = recent[message] ?? (last: -.infinity, held: 0)
        guard now - entry.last >= repeatWindow, linesThisSecond < burst else {
            if now - entry.last < repeatWindow {
                entry.held += 1
                recent[message] = entry
            } else {
                heldByBudget += 1
            }
            totalHeld += 1
            return nil
        }
        linesThisSecond += 1
        let held = (repeats: entry.held, others: heldByBudget)
        heldByBudget = 0
        if recent.count >= 1024 { recent.removeAll(keepingCapacity: true) }
        recent[message] = (last: now, held: 0)
        return held
    }

    func takeDropped() -> Int {
        lock.lock()
        defer { lock.unlock() }
        let count = dropped
        dropped = 0
        return count
    }

    /// Counts `count` lines dropped, and puts back the `restoring` ones whose report was lost with them.
    func countDropped(_ count: Int, restoring: Int) {
        lock.lock()
        defer { lock.unlock() }
        dropped += count + restoring
        totalDropped += count
    }

    var totals: (limited: Int, dropped: Int) {
        lock.lock()
        defer { lock.unlock() }
        return (totalHeld, totalDropped)
    }
}
