import DyninkaHTTP
import DyninkaLoop

/// This hop's entry in Server-Timing and its span: the service or role, when its request
/// arrived, the time spent in its function (0 when it ran none), its trace context, and the
/// next hop it called (with when).
struct HopTiming {
    var name: String
    var started: UInt64
    var function: UInt64 = 0
    var trace: TraceContext?
    /// When the call to the next hop started (monotonic ns; 0: none).
    var forwardStarted: UInt64 = 0
    /// The service called next (forwarded to, or the gateway's function).
    var next: String?

    init(name: String, started: UInt64, function: UInt64 = 0, trace: TraceContext?, forwardStarted: UInt64 = 0, next: String? = nil) {
        self.name = name
        self.started = started
        self.function = function
        self.trace = trace
        self.forwardStarted = forwardStarted
        self.next = next
    }
}

/// A stage that ran earlier in this process for the same request (fusion): its Server-Timing
/// entry, span and request count go out with the answer of the stage that answers, as its own
/// answer would have carried them had it relayed a hop.
struct FusedStage {
    var timing: HopTiming
    /// Its dependencies' responses, whose Server-Timing follows its entry.
    var earlier: [HTTPHead]
    /// Its metrics series (kept by its service, so the answer records it without a lookup).
    var series: Metrics.PerService?
}

/// Everything an answer says besides its body; `InboundConnection.send` is the one place that
/// turns it into a response head, so every role answers alike.
struct Answer {
    var status: Int
    /// A downstream response passed on: its Content-Type, Retry-After and Server-Timing go along.
    var relayed: HTTPHead?
    /// Our own JSON body (a result or a failure): Content-Type application/json.
    var json = false
    /// Ask the client to come back in a second (503 overloaded).
    var retryAfter = false
    /// This hop's Server-Timing entry; nil for the host's own answers (health, metrics, refusals
    /// of requests that are not HTTP), which carry no Server-Timing.
    var timing: HopTiming?
    /// Responses of earlier calls (dependencies, orchestrated steps) whose Server-Timing follows
    /// this hop's entry, before the relayed response's.
    var earlier: [HTTPHead] = []
    /// The series the request counts in (`dyninka_requests_total{service}` and the failures):
    /// the hop's own name by default; the gateway counts per function.
    var series: String?
    /// Whether the answer counts a request (the gateway's own refusals count a failure only:
    /// its request series are per function).
    var countsRequest = true
    /// The stages of this process that ran before this one (fusion), first to last.
    var upstream: [FusedStage] = []

    init(status: Int, relayed: HTTPHead? = nil, json: Bool = false, retryAfter: Bool = false, timing: HopTiming? = nil,
         earlier: [HTTPHead] = [], series: String? = nil) {
        self.status = status
        self.relayed = relayed
        self.json = json
        self.retryAfter = retryAfter
        self.timing = timing
        self.earlier = earlier
        self.series = series
    }

    /// The answer carrying `failure` as this hop's own JSON error.
    init(failure: ServiceFailure, timing: HopTiming?, earlier: [HTTPHead] = [], series: String? = nil) {
        self.init(status: failure.status, json: true, retryAfter: failure.kind == .overloaded, timing: timing, earlier: earlier,
                  series: series)
    }

    /// Appends the header lines ("Name: value\r\n") of this answer.
    @inline(__always)
    func appendFields(to head: ByteStore) {
        if json {
            head.append("Content-Type: application/json\r\n")
        } else {
            passOn("content-type", as: "Content-Type: ", to: head)
        }
        if retryAfter {
            head.append("Retry-After: 1\r\n")
        } else {
            passOn("retry-after", as: "Retry-After: ", to: head)
        }
        guard let timing else { return }
        // A trace begun here: tell the client its id (W3C Trace Context Level 2's traceresponse).
        if let trace = timing.trace, trace.startedHere {
            head.append("traceresponse: ")
            trace.appendTraceparent(to: head)
            head.append("\r\n")
        }
        head.append("Server-Timing: ")
        let now = EventLoop.nanoseconds()
        for stage in upstream {
            Self.appendEntry(stage.timing, now: now, earlier: stage.earlier, to: head)
            head.append(", ")
        }
        Self.appendEntry(timing, now: now, earlier: earlier, to: head)
        if let relayed, relayed.has("server-timing") {
            head.append(", ")
            relayed.appendValue(of: "server-timing", to: head)
        }
        head.append("\r\n")
    }
}

extension Answer {
    /// One stage's Server-Timing entry ("NAME;dur=MS;fn=MS"), then its dependencies' entries.
    @inline(__always)
    private static func appendEntry(_ timing: HopTiming, now: UInt64, earlier: [HTTPHead], to head: ByteStore) {
        head.append(string: timing.name)
        head.append(";dur=")
        HTTPWriter.appendMilliseconds(nanoseconds: now - timing.started, to: head)
        head.append(";fn=")
        HTTPWriter.appendMilliseconds(nanoseconds: timing.function, to: head)
        for response in earlier where response.has("server-timing") {
            head.append(", ")
            response.appendValue(of: "server-timing", to: head)
        }
    }

    /// Copies the relayed response's field `name` as the line `line` (with its own name).
    private func passOn(_ name: StaticString, as line: StaticString, to head: ByteStore) {
        guard let relayed, relayed.has(name) else { return }
        head.append(line)
        relayed.appendValue(of: name, to: head)
        head.append("\r\n")
    }
}

extension InboundConnection {
    /// Answers with `body` (kept alive by its owner until written); `failure`: this hop's own.
    @inline(__always)
    func send(_ answer: Answer, body: OwnedBytes, failure: ServiceFailure? = nil, forceClose: Bool = false) {
        record(answer, failure: failure)
        respond(status: answer.status, body: body, forceClose: forceClose) { answer.appendFields(to: $0) }
    }

    /// Answers with `failure`'s JSON error body; `series`: where the gateway counts it.
    func send(_ failure: ServiceFailure, timing: HopTiming?, earlier: [HTTPHead] = [], series: String? = nil, countsRequest: Bool = true,
              forceClose: Bool = false) {
        let body = failure.body
        var answer = Answer(failure: failure, timing: timing, earlier: earlier, series: series)
        answer.countsRequest = countsRequest
        send(answer, body: body.owned, failure: failure, forceClose: forceClose)
    }

    /// The outcome of a request, recorded once, where its answer is written (whole, or relayed):
    /// the failure in `dyninka_failures_total`, the request in `dyninka_requests_total` and its
    /// duration, and the hop's span. Answers of the host itself (health, metrics) record nothing;
    /// its refusals of requests that are not HTTP record the failure only.
    @inline(__always)
    func record(_ answer: Answer, failure: ServiceFailure?) {
        guard let timing = answer.timing else {
            if let failure { context.metrics.recordFailure(service: answer.series ?? context.configuration.service, kind: failure.kind) }
            return
        }
        let series = answer.series ?? timing.name
        if let failure { context.metrics.recordFailure(service: series, kind: failure.kind) }
        if answer.countsRequest {
            context.metrics.record(service: series, status: answer.status, seconds: context.seconds(since: timing.started))
        }
        guard !answer.upstream.isEmpty else { return tracer.finish(timing, status: answer.status, failure: failure) }
        // Stages fused before this one count and trace as if they had relayed this answer, all
        // ending when it is written (a stage never ends before the one it called).
        let now = EventLoop.nanoseconds()
        tracer.finish(timing, status: answer.status, failure: failure, end: now)
        for index in answer.upstream.indices {
            let timing = answer.upstream[index].timing
            let seconds = Double(now - timing.started) / 1e9
            if let series = answer.upstream[index].series {
                context.metrics.record(series, status: answer.status, seconds: seconds)
            } else {
                context.metrics.record(service: timing.name, status: answer.status, seconds: seconds)
            }
            tracer.finish(timing, status: answer.status, failure: nil, end: now)
        }
    }
}
