import DyninkaHTTP
import DyninkaLoop
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One finished hop as recorded on the loop: plain values, no formatting (that happens on the
/// exporter's thread).
package struct SpanRecord: Sendable {
    /// What a record takes beyond its variable strings (the struct, a service name).
    static let fixedBytes = MemoryLayout<SpanRecord>.stride + 32
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
    /// Ids from the system's random source (getrandom), fetched 256 at a time: no id predicts another.
    private var randomIDs = [UInt64](repeating: 0, count: 256)
    private var nextRandom = 256
    /// Spans dropped because the exporter fell behind, or because they would pass `maxBytes`.
    private(set) var dropped = 0
    /// Bytes the pending spans take (their strings included), and what the exporter holds (as of
    /// the last tick).
    private var pendingBytes = 0
    private var offeredBytes = 0
    /// Most bytes of spans held, pending and with the exporter (counted in /metrics' buffered bytes).
    static let maxBytes = 4 << 20
    /// Bytes of spans held now.
    var heldBytes: Int { pendingBytes + offeredBytes }

    init(configuration: HostConfiguration, appName: String, log: Log) {
        let exporter = SpanExporter(configuration: configuration, appName: appName, log: log)
        self.exporter = exporter
        recording = exporter != nil
        rate = configuration.traceRate
        tokens = configuration.traceRate
        if recording { pending.reserveCapacity(capacity) }
    }

    /// A fresh 64-bit id from the system's random source, never 0.
    @inline(__always)
    private func nextID() -> UInt64 {
        if nextRandom == randomIDs.count { refill() }
        let id = randomIDs[nextRandom]
        nextRandom += 1
        return id == 0 ? 1 : id
    }

    /// 256 ids in one getrandom(2) call (it does not block once the kernel's pool is ready).
    private func refill() {
        randomIDs.withUnsafeMutableBytes { raw in
            if !EventLoop.randomBytes(raw) {
                // Swift's generator reads the same source, 8 bytes a call.
                var generator = SystemRandomNumberGenerator()
                for i in stride(from: 0, to: raw.count, by: 8) { raw.storeBytes(of: generator.next(), toByteOffset: i, as: UInt64.self) }
            }
        }
        nextRandom = 0
    }

    /// The trace context of a request: continued from its `traceparent` when valid, else a new
    /// trace begun here.
    func begin(_ head: HTTPHead) -> TraceContext {
        let fields = head.traceFields()
        if let value = fields.traceparent, let parsed = TraceContext.parse(value) {
            let state = fields.hasTracestate ? TraceContext.limitState(head.values(of: "tracestate")) : nil
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

    /// The trace context of a stage that runs next in this process (fusion): the same trace, a
    /// new span whose parent is `caller`'s, as a hop's `traceparent` would make it.
    func child(of caller: TraceContext) -> TraceContext {
        TraceContext(traceHigh: caller.traceHigh, traceLow: caller.traceLow, parent: caller.span, span: nextID(),
                     sampled: caller.sampled, state: caller.state)
    }

    /// Records the span of an answered request when its trace is recorded (or it failed here).
    @inline(__always)
    func finish(_ timing: HopTiming, status: Int, failure: ServiceFailure?, end: UInt64? = nil) {
        guard recording, let trace = timing.trace, trace.sampled || failure != nil else { return }
        let bytes = SpanRecord.fixedBytes + (trace.state?.utf8.count ?? 0) + (failure?.message.utf8.count ?? 0)
        guard pending.count < capacity, heldBytes + bytes <= Self.maxBytes else {
            dropped += 1
            return
        }
        pendingBytes += bytes
        pending.append(SpanRecord(trace: trace, name: timing.name, start: timing.started, end: end ?? EventLoop.nanoseconds(),
                                  function: timing.function, forward: timing.forwardStarted, next: timing.next, status: status,
                                  failedService: failure?.service, message: failure?.message))
    }

    /// Every 200 ms (the sweep): refills the rate and hands the batch to the exporter.
    func tick(second: Bool) {
        if second { tokens = rate }
        guard let exporter else { return }
        if !pending.isEmpty, exporter.offer(&pending, bytes: pendingBytes) {
            pendingBytes = 0
            pending.reserveCapacity(capacity)
        }
        // Read here, not per span: the exporter's lock stays off the hop path.
        offeredBytes = exporter.queuedBytes
    }

    /// At exit: hands over what is left and waits (bounded) for the exporter to write it.
    func close() {
        guard let exporter else { return }
        _ = exporter.offer(&pending, bytes: pendingBytes)
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

    /// Bytes of the spans offered and not written yet (the inbox and the batch being written).
    var queuedBytes: Int {
        condition.lock()
        defer { condition.unlock() }
        return inboxBytes + writingBytes
    }
    /// Guarded by `condition`.
    private var inboxBytes = 0
    private var writingBytes = 0

    /// Takes `batch` of `bytes` (leaving it empty) unless the previous one is still waiting.
    func offer(_ batch: inout [SpanRecord], bytes: Int) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard inbox.isEmpty else { return false }
        inboxBytes = bytes
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
            writingBytes = inboxBytes
            inboxBytes = 0
            let last = closing && batch.isEmpty
            condition.unlock()
            if last { break }
            export(batch)
            batch.removeAll(keepingCapacity: true)
            condition.lock()
            writingBytes = 0
            condition.unlock()
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
