#if canImport(Glibc)
import Glibc
#endif
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
package struct Log: Sendable {
    package var service: String
    package var level: LogLevel

    package init(service: String, level: LogLevel) {
        self.service = service
        self.level = level
    }

    package func debug(_ message: @autoclosure () -> String) { write(.debug, message) }
    package func info(_ message: @autoclosure () -> String) { write(.info, message) }
    package func warning(_ message: @autoclosure () -> String) { write(.warning, message) }
    package func error(_ message: @autoclosure () -> String) { write(.error, message) }

    private func write(_ severity: LogLevel, _ message: () -> String) {
        guard severity >= level else { return }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var t = time_t(now.tv_sec)
        var parts = tm()
        gmtime_r(&t, &parts)
        let stamp = String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1,
                           parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec, Int(now.tv_nsec / 1_000_000))
        let line = "\(stamp) \(severity) [\(service)] \(message())\n"
        // One write(2) per line keeps lines from concurrent processes whole.
        var bytes = line
        bytes.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
