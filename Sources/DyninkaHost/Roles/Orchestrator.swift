import DyninkaHTTP
import DyninkaLoop
import DyninkaRoute

/// Gateway mode's orchestrating function for one request: calls each step of main's chain
/// through the gateway in turn (dependencies first), feeding each output to the next, and
/// stops at the first drop or error, relaying it unchanged (the paper's Listing 4).
final class Orchestration {
    // The context and the responder outlive every request.
    private unowned(unsafe) let context: HostContext
    private unowned(unsafe) let responder: OrchestratorResponder
    private let connection: InboundConnection
    private let started: UInt64
    private let trace: TraceContext
    /// When the client's budget (Dyninka-Deadline) runs out; nil without one.
    private let deadline: Deadline?
    /// Every response seen, for Server-Timing.
    private var responses: [HTTPHead] = []

    /// How a chain ended.
    enum Outcome {
        case value(OwnedBytes?)
        case dropped
        case relay(HTTPHead, OwnedBytes)
        case failed(ServiceFailure)
    }

    init(context: HostContext, responder: OrchestratorResponder, connection: InboundConnection, started: UInt64, trace: TraceContext,
         deadline: Deadline?) {
        self.context = context
        self.deadline = deadline
        self.trace = trace
        self.responder = responder
        self.connection = connection
        self.started = started
    }

    func start(steps: [CheckedStep], input: OwnedBytes?) {
        run(steps[...], input: input) { [self] outcome in
            let name = context.configuration.service
            let timing = HopTiming(name: name, started: started, trace: trace)
            switch outcome {
            case .value(let output):
                connection.send(Answer(status: 200, json: true, timing: timing, earlier: responses), body: output ?? .empty)
            case .dropped:
                connection.send(Answer(status: 204, timing: timing, earlier: responses), body: .empty)
            case .relay(let head, let body):
                connection.send(Answer(status: head.status, relayed: head, timing: timing, earlier: responses), body: body)
            case .failed(let failure):
                connection.send(failure, timing: timing, earlier: responses)
            }
        }
    }

    /// Runs `steps` one after another, starting from `input`.
    private func run(_ steps: ArraySlice<CheckedStep>, input: OwnedBytes?, completion: @escaping (Outcome) -> Void) {
        guard let step = steps.first else { return completion(.value(input)) }
        gather(step.arguments[...], collected: []) { [self] gathered in
            switch gathered {
            case .failure(let outcome):
                completion(outcome)
            case .success(let arguments):
                call(step.service.name, input: input, arguments: arguments) { [self] outcome in
                    switch outcome {
                    case .failed(let failure):
                        completion(.failed(failure))
                    case .response(let head, let body):
                        // A relayed answer brings its own Server-Timing; the others are kept for it.
                        switch head.status {
                        case 200:
                            responses.append(head)
                            run(steps.dropFirst(), input: body, completion: completion)
                        case 204:
                            responses.append(head)
                            completion(.dropped)
                        default: completion(.relay(head, body))
                        }
                    case .relaying:
                        preconditionFailure("orchestrated steps are collected, never relayed")
                    }
                }
            }
        }
    }

    private enum Gathered {
        case success([OwnedBytes])
        case failure(Outcome)
    }

    /// Produces the explicit arguments in order: constants as they are, dependencies by running them.
    private func gather(_ plans: ArraySlice<ArgumentPlan>, collected: [OwnedBytes], completion: @escaping (Gathered) -> Void) {
        guard let plan = plans.first else { return completion(.success(collected)) }
        switch plan {
        case .constant(let json):
            let bytes = ByteStore(capacity: json.utf8.count)
            bytes.append(string: json)
            gather(plans.dropFirst(), collected: collected + [bytes.owned], completion: completion)
        case .chain(let route, let optional):
            run(route.steps[...], input: nil) { [self] outcome in
                switch outcome {
                case .value(let value?):
                    gather(plans.dropFirst(), collected: collected + [value], completion: completion)
                case .value(nil), .dropped:
                    guard optional else { return completion(.failure(.dropped)) }
                    let null = ByteStore(capacity: 4)
                    null.append("null")
                    gather(plans.dropFirst(), collected: collected + [null.owned], completion: completion)
                default:
                    completion(.failure(outcome))
                }
            }
        }
    }

    /// One step through the gateway: the body is the input then each argument, their lengths in
    /// Dyninka-Parts, so the function instance slices them without parsing. With a client budget,
    /// the step waits no longer than what is left of it, and is not started once it is spent.
    private func call(_ function: String, input: OwnedBytes?, arguments: [OwnedBytes], completion: @escaping (HopOutcome) -> Void) {
        let remaining = deadline?.millisecondsLeft
        if let remaining, remaining <= 0 {
            return completion(.failed(Deadline.spent(context.configuration.service, before: "calling '\(function)'")))
        }
        let parts = [input?.bytes ?? UnsafeRawBufferPointer(start: nil, count: 0)] + arguments.map(\.bytes)
        let body = ByteStore(capacity: max(parts.reduce(0) { $0 + $1.count }, 1))
        for part in parts { body.append(part) }
        let lengths = parts.map { String($0.count) }.joined(separator: ",")
        context.sendHop(responder.target(function), body: body.owned, trace: trace, extra: { head in
            head.append("Dyninka-Parts: ")
            head.append(string: lengths)
            head.append("\r\n")
            if let remaining { Deadline.append(milliseconds: remaining, to: head) }
        }, responseTimeout: remaining, completion: completion)
    }
}

/// Gateway mode's orchestrating function: runs main's chain from the entry service, calling each
/// step through the gateway in turn (the paper's Listing 4).
final class OrchestratorResponder: ServiceResponder, Responder {
    private let gateway: PeerAddress
    /// The gateway's URL for each function, prepared once per name.
    private var targets: [String: HopTarget] = [:]

    init(context: HostContext, app: AppService, gateway: PeerAddress) {
        self.gateway = gateway
        super.init(context: context, app: app, name: context.configuration.service)
    }

    func startLine(address: String) -> String {
        "orchestrator of \(app.table.appName) on http://\(address), calling \(app.service.name)()\(app.defaultRoute.chain.isEmpty ? "" : "." + app.defaultRoute.chain.source) through the gateway at \(gateway)"
    }

    func respond(to request: Request, on connection: InboundConnection) {
        let own = context.configuration.service
        guard case .admitted(let deadline) = admit(request, on: connection) else { return }
        let entryArguments: [ArgumentPlan]
        switch app.defaultPlans {
        case .success(let plans): entryArguments = plans
        case .failure(let error):
            return connection.send(ServiceFailure(service: own, kind: .badRoute, message: error.message),
                                   timing: HopTiming(name: own, started: request.started, trace: request.trace))
        }
        let service = app.service
        let entry = CheckedStep(service: service, call: RouteCall(name: service.name, arguments: [], optionalChained: false),
                                arguments: entryArguments)
        let input = service.inputType == nil ? nil : request.body
        Orchestration(context: context, responder: self, connection: connection, started: request.started, trace: request.trace,
                      deadline: deadline)
            .start(steps: [entry] + app.defaultRoute.steps, input: input)
    }

    /// The gateway's URL for a function.
    func target(_ function: String) -> HopTarget {
        if let target = targets[function] { return target }
        let target = HopTarget(service: function, address: gateway, path: "/function/\(function)", fields: [])
        targets[function] = target
        return target
    }
}
