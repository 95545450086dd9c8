import DyninkaHTTP
import DyninkaLoop

extension ServiceHost {
    /// Gateway mode: passes `POST /function/NAME` to NAME's instance and its answer back, as
    /// bytes (the same pass-through as a point-to-point hop).
    func proxy(_ name: String, functions: PeerMap, head: HTTPHead, body: OwnedBytes?, on connection: InboundConnection,
               started: UInt64) {
        guard let address = functions.address(of: name) else {
            // Counted under the gateway's own name: a name from a request never makes a series.
            metrics.recordFailure(service: configuration.service, kind: .badRoute)
            return connection.send(ServiceFailure(
                service: configuration.service, kind: .badRoute, status: 404,
                message: "no function '\(name)' behind this gateway; it has \(functions.addresses.keys.sorted().joined(separator: ", "))"),
                timing: HopTiming(name: configuration.service, started: started))
        }
        let target = gatewayTarget(name, address: address)
        let passOn = head.has("dyninka-parts") || head.has("dyninka-deadline") ? head : nil
        sendHop(target, body: body ?? .empty, relayTo: connection, extra: passOn.map { request in { line in
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
                connection.send(failure, timing: HopTiming(name: configuration.service, started: started))
            case .response(let response, let answer):
                metrics.record(service: name, status: response.status, seconds: seconds(since: started))
                connection.send(Answer(status: response.status, relayed: response, timing: HopTiming(name: configuration.service, started: started)),
                                body: answer)
            case .relaying(let response, let hop):
                metrics.record(service: name, status: response.status, seconds: seconds(since: started))
                connection.relay(Answer(status: response.status, relayed: response, timing: HopTiming(name: configuration.service, started: started)),
                                 from: hop)
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
}
