import DyninkaHTTP
import DyninkaLoop
#if canImport(Glibc)
import Glibc
#endif

/// One request to this host's service: gather the arguments (fan-in), run the function, then
/// answer or forward the output along the route and relay what comes back.
final class Invocation: FunctionCaller {
    // The context outlives every request.
    private unowned(unsafe) let context: HostContext
    private let app: AppService
    private let connection: InboundConnection
    private let plan: RoutePlan
    private let prepared: [PreparedArgument]
    private let input: OwnedBytes?
    /// Fusion: the input as the previous stage's value (taken by the call), instead of `input`.
    private let inputValue: LibraryOutput?
    /// Fusion: the next step's stage when it runs in this process (found when the call starts).
    private var nextStage: PointToPointResponder?
    private let started: UInt64
    private let trace: TraceContext
    /// When the output went to the next hop (0: not yet), for this hop's span.
    private var forwardStarted: UInt64 = 0
    private var arguments: [OwnedBytes?]
    private var pendingDependencies = 0
    /// Heads of dependency responses, whose Server-Timing values are passed on.
    private var dependencyHeads: [HTTPHead] = []
    private var functionNanoseconds: UInt64 = 0
    private var functionStarted: UInt64 = 0
    /// When the function returned (the clock is read once there; a fused next stage starts then).
    private var functionEnded: UInt64 = 0
    private var finished = false
    /// Counted in the context's `callsWaiting` (before the call) or `callsRunning` (during it).
    private var waiting = false
    private var running = false
    /// When the client's time budget (Dyninka-Deadline) runs out; nil without one.
    var deadline: Deadline?
    /// Stages of this process that ran before this one for the same request (fusion): they
    /// answer with this one.
    var upstream: [FusedStage] = []

    /// Milliseconds left before the deadline (nil without one); 0 or less means it passed.
    private var remaining: Int? { deadline?.millisecondsLeft }

    /// Answers 504 when the budget ran out before `what`; returns true when it did. `what` is
    /// only made when it did (every hop asks, and a String per ask showed in the profile).
    private func deadlinePassed(before what: @autoclosure () -> String) -> Bool {
        guard let remaining, remaining <= 0 else { return false }
        finish(failure: Deadline.spent(service.name, before: what()), own: false)
        return true
    }

    init(context: HostContext, app: AppService, connection: InboundConnection, plan: RoutePlan, arguments: [PreparedArgument],
         input: OwnedBytes?, inputValue: LibraryOutput? = nil, started: UInt64, trace: TraceContext) {
        self.inputValue = inputValue
        self.trace = trace
        self.context = context
        self.app = app
        self.connection = connection
        self.plan = plan
        self.prepared = arguments
        self.input = input
        self.started = started
        self.arguments = Array(repeating: nil, count: arguments.count)
        super.init(loopThread: context.loopThread, wakeup: context.wakeup, table: app.table)
    }

    private var service: ServiceDescriptor { app.service }

    /// A fused stage's bound: what the hop to it would have allowed (the client's deadline, at
    /// most --response-timeout), enforced until its function returns. The stage before hands
    /// over its own (one per request, re-armed per stage: no allocation per stage).
    var bound: StageBound?

    func start() {
        if !upstream.isEmpty {
            let milliseconds = max(1, min(remaining ?? Int.max, context.configuration.responseTimeout))
            if let bound {
                bound.arm(for: self, milliseconds: milliseconds, from: started)
            } else {
                bound = StageBound(invocation: self, milliseconds: milliseconds, from: started)
            }
            context.track(bound!)
        }
        waiting = true
        context.callsWaiting += 1
        for (index, argument) in prepared.enumerated() {
            // A dependency that failed at once (no address) already answered: start nothing more.
            if finished { return }
            switch argument {
            case .constant(let bytes):
                arguments[index] = bytes.owned
            case .given(let slice):
                arguments[index] = slice
            case .dependency(let target, let optional):
                if deadlinePassed(before: "calling '\(target.service)'") { return }
                pendingDependencies += 1
                context.sendAppHop(target, body: .empty, trace: trace, deadline: remaining) { [self] outcome in
                    dependencyDone(index, outcome, optional: optional)
                }
            }
        }
        if pendingDependencies == 0, !finished { callFunction() }
    }

    // MARK: Fan-in

    private func dependencyDone(_ index: Int, _ outcome: HopOutcome, optional: Bool) {
        pendingDependencies -= 1
        guard !finished else { return }
        switch outcome {
        case .failed(let failure):
            return finish(failure: failure, own: false)
        case .response(let head, let body):
            dependencyHeads.append(head)
            switch head.status {
            case 200:
                arguments[index] = body
            case 204 where optional:
                arguments[index] = Self.null
            case 204:
                return finishDropped()
            default:
                return relay(head, body)
            }
        case .relaying:
            preconditionFailure("dependencies are collected, never relayed")
        }
        if pendingDependencies == 0 { callFunction() }
    }

    // MARK: The function

    private func callFunction() {
        // Never with a missing argument: a failed dependency has answered the client already.
        guard !finished else { return }
        if deadlinePassed(before: "'\(service.name)' ran") { return }
        if context.stateSealed {
            return finish(failure: ServiceFailure(service: service.name, kind: .overloaded, message: HandOver.sealedMessage(service.name)),
                          own: false)
        }
        stopWaiting()
        running = true
        context.callsRunning += 1
        functionStarted = EventLoop.nanoseconds()
        // A next stage in this process takes the output as a value, not as JSON.
        if let next = plan.next { nextStage = next.localStage(in: context) }
        let wantValue = nextStage.map { $0.app.service.inputType != nil && app.table.releaseValue != nil } ?? false
        let called = call(service, input: input?.bytes, inputValue: inputValue?.takeValue(), wantValue: wantValue,
                          count: arguments.count) { arguments[$0]?.bytes }
        if !called {
            finish(failure: ServiceFailure(service: service.name, kind: .function, message: "service has no entry point"), own: true)
        }
    }

    override func functionDone(_ result: FunctionResult, _ output: LibraryOutput) {
        functionEnded = EventLoop.nanoseconds()
        functionNanoseconds = functionEnded - functionStarted
        if let series = app.series {
            series.function.observe(Double(functionNanoseconds) / 1e9)
        } else {
            context.metrics.recordFunction(service: service.name, seconds: Double(functionNanoseconds) / 1e9)
        }
        running = false
        context.callsRunning -= 1
        defer { context.callsSettled?() }
        unbind()
        // A fused stage past its bound has answered already (504, as its caller's hop would).
        if finished { return }
        if context.stateSealed {
            // It ran past the hand-over's bound: the state went without waiting for it, so its
            // update may be missing there. The client is told, and may retry.
            return finish(failure: ServiceFailure(service: service.name, kind: .overloaded,
                                                  message: "'\(service.name)' handed its state over while this call ran; its update may be lost; retry"),
                          own: false)
        }
        if let checkpoint = context.checkpoint, service.hasState {
            guard checkpoint.interval == 0 else {
                checkpoint.changed(then: nil)
                return proceed(result, output)
            }
            // The answer waits until the store holds this call's update.
            checkpoint.changed { [self] stored in
                guard stored else {
                    return finish(failure: ServiceFailure(service: service.name, kind: .function, message:
                        "'\(service.name)' applied this update, but its checkpoint store \(checkpoint.store) did not take it (\(checkpoint.lastFailure)): it would not survive the loss of this node"), own: true)
                }
                proceed(result, output)
            }
            return
        }
        proceed(result, output)
    }

    /// After the call: answer, or go on to the next stage.
    private func proceed(_ result: FunctionResult, _ output: LibraryOutput) {
        // Answered meanwhile (a deadline passed while the checkpoint was written).
        if finished { return }
        switch result {
        case .value:
            guard let next = plan.next else {
                return complete(200, json: true, body: output.owned)
            }
            if deadlinePassed(before: "forwarding to '\(next.service)'") { return }
            if let nextStage {
                return continueInProcess(at: nextStage, next, output: output)
            }
            // The next hop's answer streams back to the client as it arrives (cut-through).
            forwardStarted = EventLoop.nanoseconds()
            context.sendAppHop(next, body: output.owned, relayTo: connection, trace: trace, deadline: remaining) { [self] outcome in
                switch outcome {
                case .failed(let failure): finish(failure: failure, own: false)
                case .response(let head, let body): relay(head, body)
                case .relaying(let head, let hop): relay(head, from: hop)
                }
            }
        case .dropped:
            finishDropped()
        case .badInput:
            finish(failure: ServiceFailure(service: service.name, kind: .badInput, message: output.text), own: true)
        case .threw:
            finish(failure: ServiceFailure(service: service.name, kind: .function, message: output.text), own: true)
        }
    }

    /// Fusion: the next step is a service of this process. It runs now, in process, with this
    /// stage's output; this stage's timing, span and count go with its answer (zero network time).
    private func continueInProcess(at stage: PointToPointResponder, _ next: HopTarget, output: LibraryOutput) {
        finished = true
        unbind()
        let now = functionEnded
        // Moved, not copied: this stage is done with it, and the next appends in place.
        var stages: [FusedStage] = []
        swap(&stages, &upstream)
        if stages.isEmpty { stages.reserveCapacity(plan.calls) }
        stages.append(FusedStage(timing: HopTiming(name: service.name, started: started, function: functionNanoseconds, trace: trace,
                                                   forwardStarted: now, next: context.tracer.recording ? next.service : nil),
                                 earlier: dependencyHeads, series: app.series))
        stage.continueRequest(next, output: output, on: connection, upstream: consume stages, trace: context.tracer.child(of: trace),
                              started: now, deadline: deadline, bound: spareBound)
        spareBound = nil
    }

    /// The bound this stage no longer needs, kept for the next stage of the request.
    private var spareBound: StageBound?

    private func unbind() {
        guard let bound else { return }
        context.untrack(bound)
        self.bound = nil
        spareBound = bound
    }

    /// A fused stage ran past what the hop to it would have allowed: the stage before it answers
    /// 504 naming it, exactly as that stage would have on its own host.
    func stageTimedOut(_ milliseconds: Int) {
        unbind()
        guard !finished, var caller = upstream.popLast() else { return }
        finished = true
        if waiting {
            stopWaiting()
            context.callsSettled?()
        }
        let failure = ServiceFailure(service: service.name, kind: .timeout,
                                     message: "service '\(service.name)' (fused, in this process) did not answer within \(milliseconds) ms")
        caller.timing.forwardStarted = 0
        var answer = Answer(failure: failure, timing: caller.timing, earlier: caller.earlier)
        answer.upstream = upstream
        connection.send(answer, body: failure.body.owned, failure: failure)
    }

    private func stopWaiting() {
        guard waiting else { return }
        waiting = false
        context.callsWaiting -= 1
    }

    // MARK: Answering

    /// Passes a downstream response back as it came: status, body bytes, error body included.
    private func relay(_ head: HTTPHead, _ body: OwnedBytes) {
        complete(head.status, relayed: head, body: body)
    }

    /// Passes the next hop's response back while its body streams through.
    private func relay(_ head: HTTPHead, from hop: HopClient) {
        guard let answer = answer(head.status, relayed: head) else { return }
        connection.relay(answer, from: hop)
    }

    private func finishDropped() {
        complete(204, body: .empty)
    }

    private func finish(failure: ServiceFailure, own: Bool) {
        if own { context.log.warning("\(failure)") }
        guard let answer = answer(failure.status, relayed: nil, json: true, retryAfter: failure.kind == .overloaded) else { return }
        connection.send(answer, body: failure.body.owned, failure: failure)
    }

    /// Answers once: this hop's Server-Timing first, then what the dependencies and the next hop
    /// reported.
    private func complete(_ status: Int, relayed: HTTPHead? = nil, json: Bool = false, retryAfter: Bool = false,
                          body: OwnedBytes) {
        guard let answer = answer(status, relayed: relayed, json: json, retryAfter: retryAfter) else { return }
        connection.send(answer, body: body)
    }

    /// The one answer of this request (nil once answered); the connection records its outcome.
    private func answer(_ status: Int, relayed: HTTPHead?, json: Bool = false, retryAfter: Bool = false) -> Answer? {
        guard !finished else { return nil }
        finished = true
        unbind()
        if waiting {
            stopWaiting()
            context.callsSettled?()
        }
        var answer = Answer(status: status, relayed: relayed, json: json, retryAfter: retryAfter,
                            timing: HopTiming(name: service.name, started: started, function: functionNanoseconds, trace: trace,
                                              forwardStarted: forwardStarted,
                                              next: forwardStarted == 0 || !context.tracer.recording ? nil : plan.next?.service),
                            earlier: dependencyHeads)
        answer.upstream = upstream
        return answer
    }

    /// `null`, the value of an optional dependency that dropped its item.
    // Never mutated; read on the loop thread only.
    nonisolated(unsafe) private static let null: OwnedBytes = {
        let store = ByteStore(capacity: 4)
        store.append("null")
        return store.owned
    }()
}

/// The bound of a fused stage on the host's sweep (see `Invocation.start`), armed for one stage
/// at a time; it is tracked only while that stage's function has not returned, and the stage
/// holds it then, so the reference back never dangles.
final class StageBound: Expiring {
    private unowned(unsafe) var invocation: Invocation
    private var milliseconds: Int
    private(set) var deadline: UInt64 = 0
    var trackSlot = -1

    init(invocation: Invocation, milliseconds: Int, from started: UInt64) {
        self.invocation = invocation
        self.milliseconds = milliseconds
        arm(for: invocation, milliseconds: milliseconds, from: started)
    }

    /// Armed for `invocation`, whose stage started at `started` (loop clock, ns).
    func arm(for invocation: Invocation, milliseconds: Int, from started: UInt64) {
        self.invocation = invocation
        self.milliseconds = milliseconds
        deadline = started + UInt64(milliseconds) * 1_000_000
    }

    func expire() { invocation.stageTimedOut(milliseconds) }
}
