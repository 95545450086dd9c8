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
    init(status: Int, relayed: HTTPHead? = nil, json: Bool = false, retryAfter: Bool = false, timing: HopTiming? = nil,
         earlier: [HTTPHead] = []) {
        self.status = status
        self.relayed = relayed
        self.json = json
        self.retryAfter = retryAfter
        self.timing = timing
        self.earlier = earlier
    }

    /// The answer carrying `failure` as this hop's own JSON error.
    init(failure: ServiceFailure, timing: HopTiming?, earlier: [HTTPHead] = []) {
        self.init(status: failure.status, json: true, retryAfter: failure.kind == .overloaded, timing: timing, earlier: earlier)
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
        head.append(string: timing.name)
        head.append(";dur=")
        HTTPWriter.appendMilliseconds(nanoseconds: EventLoop.nanoseconds() - timing.started, to: head)
        head.append(";fn=")
        HTTPWriter.appendMilliseconds(nanoseconds: timing.function, to: head)
        for response in earlier where response.has("server-timing") {
            head.append(", ")
            response.appendValue(of: "server-timing", to: head)
        }
        if let relayed, relayed.has("server-timing") {
            head.append(", ")
            relayed.appendValue(of: "server-timing", to: head)
        }
        head.append("\r\n")
    }
}

extension Answer {
    /// Copies the relayed response's field `name` as the line `line` (with its own name).
    private func passOn(_ name: StaticString, as line: StaticString, to head: ByteStore) {
        guard let relayed, relayed.has(name) else { return }
        head.append(line)
        relayed.appendValue(of: name, to: head)
        head.append("\r\n")
    }
}

extension InboundConnection {
    /// Answers with `body` (kept alive by its owner until written); `failure`: this hop's own,
    /// for its span.
    @inline(__always)
    func send(_ answer: Answer, body: OwnedBytes, failure: ServiceFailure? = nil, forceClose: Bool = false) {
        if let timing = answer.timing { tracer.finish(timing, status: answer.status, failure: failure) }
        respond(status: answer.status, body: body, forceClose: forceClose) { answer.appendFields(to: $0) }
    }

    /// Answers with `failure`'s JSON error body.
    func send(_ failure: ServiceFailure, timing: HopTiming?, earlier: [HTTPHead] = [], forceClose: Bool = false) {
        let body = failure.body
        send(Answer(failure: failure, timing: timing, earlier: earlier), body: body.owned, failure: failure, forceClose: forceClose)
    }
}
