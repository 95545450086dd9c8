import DyninkaHTTP
import DyninkaLoop

/// Gateway mode's central gateway: passes `POST /function/NAME` to NAME's instance and streams
/// its answer back (the same cut-through relay as a point-to-point hop).
final class GatewayResponder: Responder {
    private unowned(unsafe) let context: HostContext
    private let functions: PeerMap
    /// One prepared target per function name.
    private var targets: [String: HopTarget] = [:]

    init(context: HostContext, functions: PeerMap) {
        self.context = context
        self.functions = functions
        // Also expose OpenFaaS's gateway metric names.
        context.metrics.openFaaSNames = true
    }

    func serves(_ path: String) -> Bool { path.hasPrefix("/function/") }

    func startLine(address: String) -> String {
        "gateway on http://\(address) for \(functions.addresses.keys.sorted().joined(separator: ", "))"
    }

    func respond(to request: Request, on connection: InboundConnection) {
        let own = context.configuration.service
        guard serves(request.path) else {
            return refuse(ServiceFailure(service: own, kind: .badRoute, message: "the gateway proxies POST /function/NAME", status: 404),
                          request, on: connection)
        }
        let name = String(request.path.dropFirst("/function/".count))
        guard let address = functions.address(of: name) else {
            // Counted under the gateway's own name: a name from a request never makes a series.
            return refuse(ServiceFailure(
                service: own, kind: .badRoute, status: 404,
                message: "no function '\(name)' behind this gateway; it has \(functions.addresses.keys.sorted().joined(separator: ", "))"),
                request, on: connection)
        }
        let head = request.head
        let started = request.started
        let trace = request.trace
        // The client's budget bounds the wait for the function, which gets what is left of it.
        let deadline: Deadline?
        switch Deadline.of(head, started: started) {
        case .success(let given): deadline = given
        case .failure(let error):
            return refuse(ServiceFailure(service: own, kind: .badInput, message: error.message), request, on: connection)
        }
        let remaining = deadline?.millisecondsLeft
        if let remaining, remaining <= 0 {
            return refuse(Deadline.spent(own, before: "calling '\(name)'"), request, on: connection)
        }
        let parts = head.has("dyninka-parts") ? head : nil
        let extra: ((ByteStore) -> Void)? = parts == nil && remaining == nil ? nil : { line in
            if let parts {
                line.append("Dyninka-Parts: ")
                parts.appendValue(of: "dyninka-parts", to: line)
                line.append("\r\n")
            }
            if let remaining { Deadline.append(milliseconds: remaining, to: line) }
        }
        context.sendHop(target(name, address: address), body: request.body ?? .empty, relayTo: connection, trace: trace, extra: extra,
                        responseTimeout: remaining) { [context] outcome in
            // The function's name is kept for the span only when spans are recorded.
            let timing = HopTiming(name: own, started: started, trace: trace, forwardStarted: started, next: context.tracer.recording ? name : nil)
            switch outcome {
            // Counted per function: the series is the function's name.
            case .failed(let failure):
                connection.send(failure, timing: timing, series: name)
            case .response(let response, let answer):
                connection.send(Answer(status: response.status, relayed: response, timing: timing, series: name), body: answer)
            case .relaying(let response, let hop):
                connection.relay(Answer(status: response.status, relayed: response, timing: timing, series: name), from: hop)
            }
        }
    }

    /// A failure of the gateway itself: counted as a failure under its own name only (its
    /// request series are per function, and a name from a request never makes a series).
    private func refuse(_ failure: ServiceFailure, _ request: Request, on connection: InboundConnection) {
        connection.send(failure, timing: HopTiming(name: context.configuration.service, started: request.started, trace: request.trace),
                        countsRequest: false)
    }

    private func target(_ name: String, address: PeerAddress) -> HopTarget {
        if let target = targets[name] { return target }
        let target = HopTarget(service: name, address: address, path: "/", fields: [])
        targets[name] = target
        return target
    }
}
