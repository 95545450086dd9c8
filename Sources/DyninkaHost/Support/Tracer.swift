import DyninkaHTTP
import DyninkaLoop
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One finished hop as recorded on the loop: plain values, no formatting (that happens on the
/// exporter's thread).
package struct SpanRecord: Sendable {
    package var trace: TraceContext
    /// What ran: the service, or the gateway or orchestrator's own name.
    package var name: String
    /// Monotonic nanoseconds (EventLoop.nanoseconds()): when the request arrived, when it was
    /// answered, time in the function, when the next hop started (0: none).
    package var start: UInt64
    package var end: UInt64
    package var function: UInt64
    package var forward: UInt64
    /// The service called next (forwarded to, or proxied to by the gateway).
    package var next: String?
    package var status: Int
    /// The failure this hop answered with: the service it names and its message.
    package var failedService: String?
    package var message: String?
}

/// Records a span per answered request and hands batches to an exporter thread: the hop path
/// only appends a value to an array kept at its capacity (no allocation, no formatting, no
/// syscall); the loop's sweep hands the batch over every 200 ms.
///
/// Which traces are recorded: a request whose `traceparent` has the sampled flag always; a trace
/// this host starts, up to `--trace-rate` per second; a hop that fails on its own, always (so a
/// view sees every failure). Without an exporter (no --otlp-file, no --otlp-endpoint), nothing is
/// recorded, but `traceparent` is still continued on every hop.
final class Tracer {
    /// Spans are being recorded (an exporter is configured).
    let recording: Bool
    private let exporter: SpanExporter?
    /// Spans waiting for the next hand-over; kept at `capacity`.
    private var pending: [SpanRecord] = []
    private let capacity = 4096
    /// Traces this host may still start this second (refilled by `tick`).
    private var tokens: Int
    private let rate: Int
    private var random: UInt64
    /// Spans dropped because the exporter fell behind.
    private(set) var dropped = 0

    init(configuration: HostConfiguration, appName: String, log: Log) {
        let exporter = SpanExporter(configuration: configuration, appName: appName, log: log)
        self.exporter = exporter
        recording = exporter != nil
        rate = configuration.traceRate
        tokens = configuration.traceRate
        var generator = SystemRandomNumberGenerator()
        random = generator.next() | 1
        if recording { pending.reserveCapacity(capacity) }
    }

    /// A fresh 64-bit id (splitmix64), never 0.
    @inline(__always)
    private func nextID() -> UInt64 {
        random &+= 0x9E37_79B9_7F4A_7C15
        var z = random
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return z == 0 ? 1 : z
    }

    /// The trace context of a request: continued from its `traceparent` when valid, else a new
    /// trace begun here.
    func begin(_ head: HTTPHead) -> TraceContext {
        let fields = head.traceFields()
        if let value = fields.traceparent, let parsed = TraceContext.parse(value) {
            let state = fields.hasTracestate ? head.values(of: "tracestate").joined(separator: ",") : nil
            return TraceContext(traceHigh: parsed.traceHigh, traceLow: parsed.traceLow, parent: parsed.parent, span: nextID(),
                                sampled: parsed.flags & 1 == 1, state: state)
        }
        var sampled = false
        if recording, tokens > 0 {
            tokens -= 1
            sampled = true
        }
        return TraceContext(traceHigh: nextID(), traceLow: nextID(), parent: 0, span: nextID(), sampled: sampled)
    }

    /// Records the span of an answered request when its trace is recorded (or it failed here).
    @inline(__always)
    func finish(_ timing: HopTiming, status: Int, failure: ServiceFailure?) {
        guard recording, let trace = timing.trace, trace.sampled || failure != nil else { return }
        guard pending.count < capacity else {
            dropped += 1
            return
        }
        pending.append(SpanRecord(trace: trace, name: timing.name, start: timing.started, end: EventLoop.nanoseconds(),
                                  function: timing.function, forward: timing.forwardStarted, next: timing.next, status: status,
                                  failedService: failure?.service, message: failure?.message))
    }

    /// Every 200 ms (the sweep): refills the rate and hands the batch to the exporter.
    func tick(second: Bool) {
        if second { tokens = rate }
        guard let exporter, !pending.isEmpty else { return }
        if exporter.offer(&pending) { pending.reserveCapacity(capacity) }
    }

    /// At exit: hands over what is left and waits (bounded) for the exporter to write it.
    func close() {
        guard let exporter else { return }
        _ = exporter.offer(&pending)
        exporter.finish(timeoutSeconds: 2)
    }
}

/// Formats batches of spans as OTLP/JSON and writes them to a file (one ExportTraceServiceRequest
/// per line, as OpenTelemetry's file exporter does) and/or POSTs them to an OTLP/HTTP endpoint,
/// on a thread of its own.
final class SpanExporter: @unchecked Sendable {
    private let file: String?
    private let endpoint: (host: String, port: Int, path: String)?
    private let resource: OTLP.Resource
    private let log: Log
    /// Monotonic to Unix nanoseconds.
    private let clockOffset: UInt64
    private let condition = NSCondition()
    /// Guarded by `condition`.
    private var inbox: [SpanRecord] = []
    private var closing = false
    private var done = false
    private var failures = 0

    init?(configuration: HostConfiguration, appName: String, log: Log) {
        guard configuration.otlpFile != nil || configuration.otlpEndpoint != nil else { return nil }
        file = configuration.otlpFile
        endpoint = configuration.otlpEndpoint.flatMap(OTLP.endpoint)
        resource = OTLP.Resource(service: configuration.service, app: appName, instance: "\(getpid())")
        self.log = log
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        clockOffset = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec) - EventLoop.nanoseconds()
        Thread { [self] in run() }.start()
    }

    /// Takes `batch` (leaving it empty) unless the previous one is still being written.
    func offer(_ batch: inout [SpanRecord]) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard inbox.isEmpty else { return false }
        swap(&inbox, &batch)
        condition.signal()
        return true
    }

    func finish(timeoutSeconds: Double) {
        condition.lock()
        closing = true
        condition.signal()
        let limit = Date(timeIntervalSinceNow: timeoutSeconds)
        while !done, condition.wait(until: limit) {}
        condition.unlock()
    }

    private func run() {
        // The kernel's name of the thread, so that top and /proc show its CPU apart from the loop's.
        let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        if comm >= 0 {
            _ = write(comm, "dyninka-spans", 13)
            close(comm)
        }
        var batch: [SpanRecord] = []
        while true {
            condition.lock()
            while inbox.isEmpty && !closing { condition.wait() }
            swap(&inbox, &batch)
            let last = closing && batch.isEmpty
            condition.unlock()
            if last { break }
            export(batch)
            batch.removeAll(keepingCapacity: true)
        }
        condition.lock()
        done = true
        condition.broadcast()
        condition.unlock()
    }

    private func export(_ batch: [SpanRecord]) {
        let json = OTLP.encode(batch, resource: resource, clockOffset: clockOffset)
        if let file {
            let line = json + "\n"
            let descriptor = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            if descriptor < 0 {
                report("cannot open --otlp-file \(file): \(String(cString: strerror(errno)))")
            } else {
                var written = 0
                line.utf8CString.withUnsafeBytes { raw in
                    let count = raw.count - 1
                    while written < count {
                        let n = write(descriptor, raw.baseAddress! + written, count - written)
                        if n <= 0 { break }
                        written += n
                    }
                }
                close(descriptor)
            }
        }
        if let endpoint {
            if let problem = OTLP.post(json, to: endpoint) {
                report("cannot export \(batch.count) spans to http://\(endpoint.host):\(endpoint.port)\(endpoint.path): \(problem)")
            } else if failures > 0 {
                log.info("spans reach http://\(endpoint.host):\(endpoint.port)\(endpoint.path) again after \(failures) failed exports")
                failures = 0
            }
        }
    }

    /// A failed export is logged once, then every 100th time.
    private func report(_ message: String) {
        failures += 1
        if failures == 1 || failures % 100 == 0 { log.warning("\(message) (failed \(failures) time\(failures == 1 ? "" : "s"); spans of those batches are lost)") }
    }
}
