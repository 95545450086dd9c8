/// Counters and histograms of one host, rendered in the Prometheus text format at /metrics.
package final class Metrics {
    /// Upper bounds of the latency buckets, in seconds.
    static let bounds: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    struct Histogram {
        var buckets = [Int](repeating: 0, count: Metrics.bounds.count)
        var count = 0
        var sum = 0.0

        mutating func observe(_ seconds: Double) {
            count += 1
            sum += seconds
            let bounds = Metrics.bounds
            var i = 0
            while i < bounds.count, seconds > bounds[i] { i += 1 }
            if i < bounds.count { buckets[i] += 1 }
        }
    }

    final class PerService {
        let name: String
        var responses: [Int: Int] = [:]
        var failures: [FailureKind: Int] = [:]
        var duration = Histogram()
        var function = Histogram()
        init(name: String) { self.name = name }
    }

    private var services: [String: PerService] = [:]
    /// The last service recorded: a host records its own service on every request, and comparing
    /// the same String with itself is cheaper than hashing it.
    private var last: PerService?

    /// The series of `service`, to keep and record into without a lookup per request (a fused
    /// host records several services per request).
    func series(_ service: String) -> PerService { slot(service) }

    /// Records a finished request into a series kept from `series(_:)`.
    func record(_ series: PerService, status: Int, seconds: Double) {
        series.responses[status, default: 0] += 1
        series.duration.observe(seconds)
    }

    private func slot(_ service: String) -> PerService {
        if let last, last.name == service { return last }
        let slot = services[service] ?? PerService(name: service)
        services[service] = slot
        last = slot
        return slot
    }
    /// Requests being processed now.
    package var inFlight = 0
    /// Open client connections now.
    package var connections = 0
    /// Connections to next hops that failed (refused, reset, timed out).
    package var hopFailures = 0
    /// Bytes of requests and responses held in memory now (see --max-buffered-bytes).
    package var bufferedBytes = 0
    /// Client connections closed because their client did not read its response in time.
    package var writeTimeouts = 0
    /// Name lookups of peers given by name (few: resolved addresses are kept for --name-ttl).
    package var nameLookups = 0
    /// Read blocks the loop has now (64 KiB each): one, plus one per request body or relayed
    /// piece still held; set when /metrics is read.
    package var readBlocks = 0
    /// Spans not recorded because the exporter fell behind (set when /metrics is read).
    package var spansDropped = 0

    /// Requests held while a new instance waits for its predecessor's @Placed state.
    package var heldRequests = 0
    /// What this host made of the state handed to it (nil: it took over from no one).
    package var stateOutcome: (restored: Bool, code: String, values: Int, heldSeconds: Double)?

    /// Checkpoint writes by outcome (stored, failed), their total seconds, and the bytes of the last.
    package var checkpointWrites: [String: Int] = [:]
    package var checkpointSeconds = 0.0
    package var checkpointBytes = 0

    /// Also expose OpenFaaS's gateway metric names (gateway mode's gateway).
    package var openFaaSNames = false

    package init() {}

    /// Records a finished request of `service`: its status and whole time.
    package func record(service: String, status: Int, seconds: Double) {
        let slot = slot(service)
        slot.responses[status, default: 0] += 1
        slot.duration.observe(seconds)
    }

    /// Records a failure that happened in `service` (not one relayed from downstream).
    package func recordFailure(service: String, kind: FailureKind) {
        slot(service).failures[kind, default: 0] += 1
    }

    /// Records the time spent inside the service function.
    package func recordFunction(service: String, seconds: Double) {
        slot(service).function.observe(seconds)
    }

    /// Number of responses of `service` with `status` so far.
    package func responses(service: String, status: Int) -> Int { services[service]?.responses[status] ?? 0 }

    /// The Prometheus text exposition.
    package func render() -> String {
        var out = ""
        counter(&out, "dyninka_requests_total", "Requests answered, by service and HTTP status.", label: "service")
        out += "# HELP dyninka_errors_total Failures that happened in this service, by kind (relayed ones are not counted).\n"
        out += "# TYPE dyninka_errors_total counter\n"
        for (name, s) in services.sorted(by: { $0.key < $1.key }) {
            for kind in FailureKind.allCases {
                out += "dyninka_errors_total{service=\"\(Self.escape(name))\",kind=\"\(kind.rawValue)\"} \(s.failures[kind] ?? 0)\n"
            }
        }
        histogram(&out, "dyninka_request_duration_seconds", "Time from request to response, downstream included.", \.duration)
        histogram(&out, "dyninka_function_duration_seconds", "Time inside the service function.", \.function)
        if openFaaSNames {
            counter(&out, "gateway_function_invocation_total", "Invocations by function and status (OpenFaaS names).", label: "function_name")
            histogram(&out, "gateway_functions_seconds", "Function call duration through the gateway (OpenFaaS names).", \.duration,
                      label: "function_name")
        }
        let single: [(String, String, String, Int)] = [
            ("dyninka_in_flight_requests", "gauge", "Requests in flight, until their response is written.", inFlight),
            ("dyninka_open_connections", "gauge", "Open client connections.", connections),
            ("dyninka_hop_failures_total", "counter", "Next-hop connections that failed.", hopFailures),
            ("dyninka_buffered_bytes", "gauge", "Bytes of requests and responses held in memory.", bufferedBytes),
            ("dyninka_write_timeouts_total", "counter", "Client connections closed because the client read no response in time.",
             writeTimeouts),
            ("dyninka_name_lookups_total", "counter", "Lookups of peers given by name.", nameLookups),
            ("dyninka_read_blocks", "gauge", "64 KiB blocks the loop reads into (held bodies and relayed pieces keep theirs).", readBlocks),
            ("dyninka_spans_dropped_total", "counter", "Spans not recorded because the exporter fell behind.", spansDropped),
            ("dyninka_held_requests", "gauge", "Requests held until the previous instance's @Placed state comes.", heldRequests),
        ]
        for (name, type, help, value) in single {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        if !checkpointWrites.isEmpty {
            out += "# HELP dyninka_checkpoint_writes_total Writes of the @Placed state to the checkpoint store, by outcome.\n"
            out += "# TYPE dyninka_checkpoint_writes_total counter\n"
            for outcome in ["stored", "failed"] { out += "dyninka_checkpoint_writes_total{outcome=\"\(outcome)\"} \(checkpointWrites[outcome] ?? 0)\n" }
            out += "# HELP dyninka_checkpoint_write_seconds_total Time the checkpoint writes took, from snapshot to the store's answer.\n"
            out += "# TYPE dyninka_checkpoint_write_seconds_total counter\ndyninka_checkpoint_write_seconds_total \(checkpointSeconds)\n"
            out += "# HELP dyninka_checkpoint_bytes Bytes of the last checkpoint write.\n"
            out += "# TYPE dyninka_checkpoint_bytes gauge\ndyninka_checkpoint_bytes \(checkpointBytes)\n"
        }
        if let state = stateOutcome {
            out += "# HELP dyninka_state_restored 1 when this host took over its predecessor's @Placed state, 0 when it started fresh (outcome says why).\n"
            out += "# TYPE dyninka_state_restored gauge\ndyninka_state_restored{outcome=\"\(state.code)\"} \(state.restored ? 1 : 0)\n"
            out += "# HELP dyninka_state_restored_values Top-level @Placed values taken over from the predecessor.\n"
            out += "# TYPE dyninka_state_restored_values gauge\ndyninka_state_restored_values \(state.values)\n"
            out += "# HELP dyninka_state_hold_seconds How long requests were held for the predecessor's state.\n"
            out += "# TYPE dyninka_state_hold_seconds gauge\ndyninka_state_hold_seconds \(state.heldSeconds)\n"
        }
        return out
    }

    /// A label value as the Prometheus text format requires: backslash, double quote and line
    /// feed escaped, so no value can end its label or its line.
    package static func escape(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == 92 || $0 == 34 || $0 == 10 }) else { return value }
        var out = ""
        for character in value.unicodeScalars {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    /// Responses by status, one counter family, with the service under `label`.
    private func counter(_ out: inout String, _ name: String, _ help: String, label: String) {
        out += "# HELP \(name) \(help)\n# TYPE \(name) counter\n"
        for (service, s) in services.sorted(by: { $0.key < $1.key }) {
            for (status, count) in s.responses.sorted(by: { $0.key < $1.key }) {
                out += "\(name){\(label)=\"\(Self.escape(service))\",code=\"\(status)\"} \(count)\n"
            }
        }
    }

    private func histogram(_ out: inout String, _ name: String, _ help: String, _ path: KeyPath<PerService, Histogram>,
                           label: String = "service") {
        out += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        for (key, s) in services.sorted(by: { $0.key < $1.key }) {
            let service = Self.escape(key)
            let h = s[keyPath: path]
            var cumulative = 0
            for (i, bound) in Metrics.bounds.enumerated() {
                cumulative += h.buckets[i]
                out += "\(name)_bucket{\(label)=\"\(service)\",le=\"\(bound)\"} \(cumulative)\n"
            }
            out += "\(name)_bucket{\(label)=\"\(service)\",le=\"+Inf\"} \(h.count)\n"
            out += "\(name)_sum{\(label)=\"\(service)\"} \(h.sum)\n"
            out += "\(name)_count{\(label)=\"\(service)\"} \(h.count)\n"
        }
    }
}
