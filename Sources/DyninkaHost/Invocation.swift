import CDyninkaABI
import DyninkaHTTP
import DyninkaLoop
#if canImport(Glibc)
import Glibc
#endif

/// Output bytes owned by the app library, released through its table when the write is done.
final class LibraryBytes: @unchecked Sendable {
    // Moved from the completing thread to the loop once; only the loop touches it afterwards.
    let data: UnsafeMutablePointer<UInt8>?
    let count: Int
    let release: (@convention(c) (UnsafeMutablePointer<UInt8>?) -> Void)?

    init(data: UnsafeMutablePointer<UInt8>?, count: Int, release: (@convention(c) (UnsafeMutablePointer<UInt8>?) -> Void)?) {
        self.data = data
        self.count = count
        self.release = release
    }

    deinit { if let data { release?(data) } }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: data, count: count) }
    var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// The context handed to a service entry: finds its way back to the loop from any thread.
private final class CallContext: @unchecked Sendable {
    // Created and consumed on the loop; only `loopThread` and `wakeup` are read elsewhere.
    let invocation: Invocation
    let loopThread: pthread_t
    let wakeup: LoopWakeup
    let release: (@convention(c) (UnsafeMutablePointer<UInt8>?) -> Void)?

    init(invocation: Invocation, loopThread: pthread_t, wakeup: LoopWakeup,
         release: (@convention(c) (UnsafeMutablePointer<UInt8>?) -> Void)?) {
        self.invocation = invocation
        self.loopThread = loopThread
        self.wakeup = wakeup
        self.release = release
    }
}

/// One request to this host's service: gather the arguments (fan-in), run the function, then
/// answer or forward the output along the route and relay what comes back.
final class Invocation {
    private unowned let host: ServiceHost
    private let connection: InboundConnection
    private let service: ServiceDescriptor
    private let route: CheckedRoute
    private let plans: [ArgumentPlan]
    private let input: ByteBuffer?
    private let started: UInt64
    private var arguments: [ByteBuffer?]
    private var pendingDependencies = 0
    private var downstreamTimings: [String] = []
    private var functionNanoseconds: UInt64 = 0
    private var functionStarted: UInt64 = 0
    private var finished = false
    private var callArguments: UnsafeMutablePointer<dyninka_bytes>?

    init(host: ServiceHost, connection: InboundConnection, service: ServiceDescriptor, route: CheckedRoute,
         plans: [ArgumentPlan], input: ByteBuffer?, started: UInt64) {
        self.host = host
        self.connection = connection
        self.service = service
        self.route = route
        self.plans = plans
        self.input = input
        self.started = started
        self.arguments = Array(repeating: nil, count: plans.count)
    }

    deinit { callArguments?.deallocate() }

    func start() {
        host.metrics.inFlight += 1
        for (index, plan) in plans.enumerated() {
            switch plan {
            case .constant(let json):
                let bytes = ByteBuffer(capacity: json.utf8.count)
                bytes.append(json)
                arguments[index] = bytes
            case .chain(let chain, let optional):
                pendingDependencies += 1
                let first = chain.steps[0]
                host.sendHop(to: first.service.name, body: UnsafeRawBufferPointer(start: nil, count: 0), owners: [],
                             route: chain.chain.rest.source, arguments: first.call.argumentsSource) { [self] outcome in
                    dependencyDone(index, outcome, optional: optional)
                }
            }
        }
        if pendingDependencies == 0 { callFunction() }
    }

    // MARK: Fan-in

    private func dependencyDone(_ index: Int, _ outcome: HopOutcome, optional: Bool) {
        pendingDependencies -= 1
        guard !finished else { return }
        switch outcome {
        case .failed(let failure):
            return finish(failure: failure, own: false)
        case .response(let head, let body):
            if let timing = head.value(of: "server-timing") { downstreamTimings.append(timing) }
            switch head.status {
            case 200:
                arguments[index] = body
            case 204 where optional:
                let null = ByteBuffer(capacity: 4)
                null.append("null")
                arguments[index] = null
            case 204:
                return finishDropped()
            default:
                return relay(head, body)
            }
        }
        if pendingDependencies == 0 { callFunction() }
    }

    // MARK: The function

    private func callFunction() {
        guard let entry = service.entry else {
            return finish(failure: ServiceFailure(service: service.name, kind: .function, message: "service has no entry point"), own: true)
        }
        let count = arguments.count
        if count > 0 {
            let array = UnsafeMutablePointer<dyninka_bytes>.allocate(capacity: count)
            for (i, argument) in arguments.enumerated() {
                let bytes = argument?.bytes
                array[i] = dyninka_bytes(data: bytes?.baseAddress?.assumingMemoryBound(to: UInt8.self), length: bytes?.count ?? 0)
            }
            callArguments = array
        }
        let inputBytes = input?.bytes
        let context = CallContext(invocation: self, loopThread: host.loopThread, wakeup: host.wakeup,
                                  release: host.table.freeBytes)
        var call = dyninka_call(
            input: dyninka_bytes(data: inputBytes?.baseAddress?.assumingMemoryBound(to: UInt8.self), length: inputBytes?.count ?? 0),
            arguments: callArguments.map { UnsafePointer($0) }, argument_count: count,
            context: Unmanaged.passRetained(context).toOpaque(),
            complete: { context, status, data, length in
                let context = Unmanaged<CallContext>.fromOpaque(context!).takeRetainedValue()
                let output = LibraryBytes(data: data, count: length, release: context.release)
                if pthread_equal(pthread_self(), context.loopThread) != 0 {
                    context.invocation.functionDone(status, output)
                } else {
                    context.wakeup.submit { context.invocation.functionDone(status, output) }
                }
            })
        functionStarted = EventLoop.nanoseconds()
        entry(&call)
    }

    private func functionDone(_ status: Int32, _ output: LibraryBytes) {
        functionNanoseconds = EventLoop.nanoseconds() - functionStarted
        host.metrics.recordFunction(service: service.name, seconds: Double(functionNanoseconds) / 1e9)
        switch dyninka_status(UInt32(status)) {
        case DYNINKA_STATUS_OK:
            guard let next = route.steps.first else {
                return finish(status: 200, fields: [("Content-Type", "application/json")], body: output.bytes, owners: [output])
            }
            host.sendHop(to: next.service.name, body: output.bytes, owners: [output], route: route.chain.rest.source,
                         arguments: next.call.argumentsSource) { [self] outcome in
                switch outcome {
                case .failed(let failure): finish(failure: failure, own: false)
                case .response(let head, let body): relay(head, body)
                }
            }
        case DYNINKA_STATUS_NIL:
            finishDropped()
        case DYNINKA_STATUS_BAD_INPUT:
            finish(failure: ServiceFailure(service: service.name, kind: .badInput, message: output.text), own: true)
        default:
            finish(failure: ServiceFailure(service: service.name, kind: .function, message: output.text), own: true)
        }
    }

    // MARK: Answering

    private func serverTiming(extra: String? = nil) -> String {
        let total = Double(EventLoop.nanoseconds() - started) / 1e6
        let function = Double(functionNanoseconds) / 1e6
        var value = "\(service.name);dur=\(format(total));fn=\(format(function))"
        for timing in downstreamTimings { value += ", " + timing }
        if let extra { value += ", " + extra }
        return value
    }

    private func format(_ milliseconds: Double) -> String {
        let micros = Int((milliseconds * 1000).rounded())
        let fraction = micros % 1000
        return "\(micros / 1000).\(fraction < 10 ? "00" : fraction < 100 ? "0" : "")\(fraction)"
    }

    /// Passes a downstream response back as it came: status, body bytes, error body included.
    private func relay(_ head: HTTPHead, _ body: ByteBuffer) {
        var fields: [(String, String)] = []
        if let type = head.value(of: "content-type") { fields.append(("Content-Type", type)) }
        if let retry = head.value(of: "retry-after") { fields.append(("Retry-After", retry)) }
        fields.append(("Server-Timing", serverTiming(extra: head.value(of: "server-timing"))))
        complete(status: head.status, fields: fields, body: body.bytes, owners: [body])
    }

    private func finishDropped() {
        complete(status: 204, fields: [("Server-Timing", serverTiming())], body: UnsafeRawBufferPointer(start: nil, count: 0), owners: [])
    }

    private func finish(status: Int, fields: [(String, String)], body: UnsafeRawBufferPointer, owners: [AnyObject]) {
        complete(status: status, fields: fields + [("Server-Timing", serverTiming())], body: body, owners: owners)
    }

    private func finish(failure: ServiceFailure, own: Bool) {
        if own { host.log.warning("\(failure)") }
        host.metrics.recordFailure(service: service.name, kind: failure.kind)
        let body = failure.body
        var fields: [(String, String)] = [("Content-Type", "application/json"), ("Server-Timing", serverTiming())]
        if failure.kind == .overloaded { fields.append(("Retry-After", "1")) }
        complete(status: failure.status, fields: fields, body: body.bytes, owners: [body])
    }

    private func complete(status: Int, fields: [(String, String)], body: UnsafeRawBufferPointer, owners: [AnyObject]) {
        guard !finished else { return }
        finished = true
        host.metrics.inFlight -= 1
        host.metrics.record(service: service.name, status: status, seconds: Double(EventLoop.nanoseconds() - started) / 1e9)
        connection.respond(status: status, fields: fields, body: body, owners: owners)
        host.invocationFinished()
    }
}
