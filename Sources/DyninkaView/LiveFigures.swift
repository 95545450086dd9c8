import Foundation

/// One sample of the Prometheus text format: name, labels, value.
package struct MetricSample: Equatable, Sendable {
    package var name: String
    package var labels: [String: String]
    package var value: Double

    /// The samples of a Prometheus text exposition (comments and malformed lines skipped).
    package static func parse(_ text: String) -> [MetricSample] {
        var samples: [MetricSample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            var labels: [String: String] = [:]
            let name: Substring
            var rest: Substring
            if let brace = line.firstIndex(of: "{") {
                name = line[..<brace]
                guard let close = line.lastIndex(of: "}") else { continue }
                labels = Self.labels(line[line.index(after: brace)..<close])
                rest = line[line.index(after: close)...]
            } else {
                guard let space = line.firstIndex(of: " ") else { continue }
                name = line[..<space]
                rest = line[space...]
            }
            rest = rest.drop { $0 == " " }
            let number = rest.prefix { $0 != " " }
            guard let value = number == "+Inf" ? Double.infinity : Double(number) else { continue }
            samples.append(MetricSample(name: String(name), labels: labels, value: value))
        }
        return samples
    }

    /// `a="x",b="y"` with the format's escapes (\\, \", \n).
    private static func labels(_ text: Substring) -> [String: String] {
        var labels: [String: String] = [:]
        var index = text.startIndex
        while index < text.endIndex {
            guard let equals = text[index...].firstIndex(of: "=") else { break }
            let key = text[index..<equals].trimmingCharacters(in: CharacterSet(charactersIn: ", "))
            var cursor = text.index(after: equals)
            guard cursor < text.endIndex, text[cursor] == "\"" else { break }
            cursor = text.index(after: cursor)
            var value = ""
            while cursor < text.endIndex, text[cursor] != "\"" {
                if text[cursor] == "\\", text.index(after: cursor) < text.endIndex {
                    cursor = text.index(after: cursor)
                    value.append(text[cursor] == "n" ? "\n" : text[cursor])
                } else {
                    value.append(text[cursor])
                }
                cursor = text.index(after: cursor)
            }
            labels[key] = value
            index = cursor < text.endIndex ? text.index(after: cursor) : cursor
        }
        return labels
    }
}

/// Live figures of one service, from the difference of two scrapes of its host's /metrics.
package struct ServiceFigures: Codable, Equatable, Sendable {
    /// Requests answered per second.
    package var rate: Double = 0
    /// Share of answers that were errors (status 400 and above), 0...1.
    package var errorRate: Double = 0
    /// Answers with 204 (the item was dropped) per second.
    package var dropRate: Double = 0
    /// Latency quantiles of the answers in the interval (downstream included), milliseconds.
    package var p50: Double?
    package var p99: Double?
    /// Mean time in the function, milliseconds.
    package var function: Double?
    /// Requests answered since the host started.
    package var total: Double = 0
    /// Requests in flight now.
    package var inFlight: Double = 0
}

/// Cumulative counters of one service read from one scrape.
struct ServiceCounters {
    var responses: [String: Double] = [:]
    var buckets: [(bound: Double, count: Double)] = []
    var functionSum = 0.0
    var functionCount = 0.0
    var inFlight = 0.0

    var total: Double { responses.values.reduce(0, +) }

    /// The counters of `service` in `samples` (every series of the host when `service` is nil:
    /// the gateway answers under its functions' names).
    static func read(_ samples: [MetricSample], service: String?) -> ServiceCounters {
        var counters = ServiceCounters()
        var buckets: [Double: Double] = [:]
        for sample in samples {
            if sample.name == "dyninka_in_flight_requests" { counters.inFlight = sample.value }
            if let service, sample.labels["service"] != service { continue }
            switch sample.name {
            case "dyninka_requests_total":
                counters.responses[sample.labels["code"] ?? "", default: 0] += sample.value
            case "dyninka_request_duration_seconds_bucket":
                if let le = sample.labels["le"], let bound = le == "+Inf" ? Double.infinity : Double(le) { buckets[bound, default: 0] += sample.value }
            case "dyninka_function_duration_seconds_sum":
                counters.functionSum += sample.value
            case "dyninka_function_duration_seconds_count":
                counters.functionCount += sample.value
            default:
                break
            }
        }
        counters.buckets = buckets.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        return counters
    }

    /// Figures over the interval from `earlier` to this scrape, `seconds` apart.
    func figures(since earlier: ServiceCounters?, seconds: Double) -> ServiceFigures {
        var figures = ServiceFigures(total: total, inFlight: inFlight)
        guard let earlier, seconds > 0 else { return figures }
        let answered = total - earlier.total
        guard answered > 0 else { return figures }
        figures.rate = answered / seconds
        var errors = 0.0
        for (code, count) in responses where (Int(code) ?? 0) >= 400 { errors += count - (earlier.responses[code] ?? 0) }
        figures.errorRate = errors / answered
        figures.dropRate = (responses["204", default: 0] - earlier.responses["204", default: 0]) / seconds
        let before = Dictionary(earlier.buckets.map { ($0.bound, $0.count) }, uniquingKeysWith: +)
        let delta = buckets.map { ($0.bound, $0.count - (before[$0.bound] ?? 0)) }
        figures.p50 = Self.quantile(0.5, delta).map { $0 * 1000 }
        figures.p99 = Self.quantile(0.99, delta).map { $0 * 1000 }
        let calls = functionCount - earlier.functionCount
        if calls > 0 { figures.function = (functionSum - earlier.functionSum) / calls * 1000 }
        return figures
    }

    /// The `q` quantile of cumulative `buckets`, interpolated linearly inside its bucket (as
    /// Prometheus's histogram_quantile does); the highest finite bound when it falls in +Inf.
    static func quantile(_ q: Double, _ buckets: [(Double, Double)]) -> Double? {
        guard let total = buckets.last?.1, total > 0 else { return nil }
        let rank = q * total
        var lowerBound = 0.0
        var lowerCount = 0.0
        for (bound, count) in buckets {
            if count >= rank {
                guard bound.isFinite else { return lowerBound }
                let inBucket = count - lowerCount
                return inBucket > 0 ? lowerBound + (bound - lowerBound) * (rank - lowerCount) / inBucket : bound
            }
            lowerBound = bound
            lowerCount = count
        }
        return lowerBound
    }
}

/// Scrapes every host's /metrics and keeps the figures of the last interval, per service.
package final class LiveFigures: @unchecked Sendable {
    private let lock = NSLock()
    private var previous: [String: (counters: ServiceCounters, at: Date)] = [:]
    private var current: [String: ServiceFigures] = [:]

    package init() {}

    /// Figures per service (host name) after the last scrape.
    package var figures: [String: ServiceFigures] { lock.withLock { current } }

    /// Reads `text` (a host's /metrics) for host `name`; `own` false reads every series (the
    /// gateway's, which are per function).
    package func update(host name: String, metrics text: String?, own: Bool = true, at now: Date = Date()) {
        guard let text else {
            lock.withLock { current[name] = nil; previous[name] = nil }
            return
        }
        let counters = ServiceCounters.read(MetricSample.parse(text), service: own ? name : nil)
        lock.withLock {
            let earlier = previous[name]
            current[name] = counters.figures(since: earlier?.counters, seconds: earlier.map { now.timeIntervalSince($0.at) } ?? 0)
            previous[name] = (counters, now)
        }
    }
}
