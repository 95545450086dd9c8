import DyninkaHTTP
import DyninkaLoop

extension ServiceHost {
    /// Gateway mode: passes `POST /function/NAME` to NAME's instance and its answer back, as
    /// bytes (the same pass-through as a point-to-point hop).
    func proxy(_ name: String, functions: PeerMap, head: HTTPHead, body: ByteBuffer?, on connection: InboundConnection,
               started: UInt64) {
        guard let address = functions.address(of: name) else {
            // Counted under the gateway's own name: a name from a request never makes a series.
            metrics.recordFailure(service: configuration.service, kind: .badRoute)
            return connection.respond(failure: ServiceFailure(
                service: configuration.service, kind: .badRoute, status: 404,
                message: "no function '\(name)' behind this gateway; it has \(functions.addresses.keys.sorted().joined(separator: ", "))"))
        }
        let target = gatewayTarget(name, address: address)
        let bytes = body?.bytes ?? UnsafeRawBufferPointer(start: nil, count: 0)
        let passOn = head.has("dyninka-parts") || head.has("dyninka-deadline") ? head : nil
        sendHop(target, body: bytes, owner: body, extra: passOn.map { request in { line in
            if request.has("dyninka-parts") {
                line.append("Dyninka-Parts: ")
                request.appendValue(of: "dyninka-parts", to: line)
                line.append("\r\n")
            }
            if request.has("dyninka-deadline") {
                line.append("Dyninka-Deadline: ")
                request.appendValue(of: "dyninka-deadline", to: line)
                line.append("\r\n")
            }
        } }) { [self] outcome in
            switch outcome {
            case .failed(let failure):
                metrics.recordFailure(service: name, kind: failure.kind)
                metrics.record(service: name, status: failure.status, seconds: seconds(since: started))
                respond(failure: failure, timing: (configuration.service, started, 0), downstream: [], on: connection)
            case .response(let response, let answer):
                metrics.record(service: name, status: response.status, seconds: seconds(since: started))
                relay(response, answer, timing: (configuration.service, started, 0), downstream: [response], on: connection)
            }
        }
    }

    private func gatewayTarget(_ name: String, address: PeerAddress) -> HopTarget {
        if let target = gatewayTargets[name] { return target }
        let target = HopTarget(service: name, address: address, path: "/", fields: [])
        gatewayTargets[name] = target
        return target
    }

    func seconds(since started: UInt64) -> Double { Double(EventLoop.nanoseconds() - started) / 1e9 }

    /// Answers with a response that came from elsewhere: its status, type and body as they came,
    /// and Server-Timing with this hop first, then what the `downstream` heads reported.
    func relay(_ response: HTTPHead, _ body: ByteBuffer, timing: (name: String, started: UInt64, function: UInt64),
               downstream: [HTTPHead], on connection: InboundConnection) {
        connection.respond(status: response.status, body: body.bytes, owner: body) { head in
            if response.has("content-type") {
                head.append("Content-Type: ")
                response.appendValue(of: "content-type", to: head)
                head.append("\r\n")
            }
            if response.has("retry-after") {
                head.append("Retry-After: ")
                response.appendValue(of: "retry-after", to: head)
                head.append("\r\n")
            }
            appendServerTiming(timing, downstream: downstream, to: head)
        }
    }

    /// Answers with this host's own failure.
    func respond(failure: ServiceFailure, timing: (name: String, started: UInt64, function: UInt64), downstream: [HTTPHead],
                 on connection: InboundConnection) {
        let body = failure.body
        connection.respond(status: failure.status, body: body.bytes, owner: body) { head in
            head.append("Content-Type: application/json\r\n")
            if failure.kind == .overloaded { head.append("Retry-After: 1\r\n") }
            appendServerTiming(timing, downstream: downstream, to: head)
        }
    }

    func appendServerTiming(_ timing: (name: String, started: UInt64, function: UInt64), downstream: [HTTPHead], to head: ByteBuffer) {
        head.append("Server-Timing: ")
        head.append(timing.name)
        head.append(";dur=")
        HTTPWriter.appendMilliseconds(nanoseconds: EventLoop.nanoseconds() - timing.started, to: head)
        head.append(";fn=")
        HTTPWriter.appendMilliseconds(nanoseconds: timing.function, to: head)
        for response in downstream where response.has("server-timing") {
            head.append(", ")
            response.appendValue(of: "server-timing", to: head)
        }
        head.append("\r\n")
    }
}
