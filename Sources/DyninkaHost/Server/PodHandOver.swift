import DyninkaHTTP
import DyninkaLoop
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The hand-over of @Placed state between two instances over the network: on Kubernetes, the
/// old and the new pod of a stateful service (a rollout, a move, a drain). The files of
/// HandOver.swift need one machine; this needs only the app key and a control port.
///
/// - The new instance (`--handover-from NAME:PORT`, `--pod-ip`) holds its requests and answers
///   `/readyz` with 503, looks NAME up (a headless Service listing not-ready pods: the old pod and
///   itself), and asks every other address for the state: `POST /handover` on its control port,
///   naming itself as the successor (`Dyninka-Successor: IP:PORT`), signed with the app key. No
///   other instance there: it starts fresh at once (the first pod of a deployment).
/// - The old instance (`--control-port`) checks the signature (no client can pull state, or push
///   it: the new side only takes state it asked for), then relays every request that arrives
///   from then on to the successor instead of running it, and once no call is running or
///   waiting it snapshots its services, answers the control request with the state and seals.
///   It keeps relaying until it is stopped (Kubernetes' SIGTERM, after the new pod is ready).
/// - The successor restores the state, serves what it held (relayed requests included, in
///   arrival order: they were not applied anywhere else), reports the outcome (log, /metrics) and
///   becomes ready.
///
/// Bounded: the old side seals within its hand-over bound even if a call still runs (that
/// call's answer is then a 503: its update may be missing), and the new side waits at most
/// `--state-wait` for the answer before it starts fresh, saying why.
extension ServiceHost {
    /// What the control request signs: its purpose, and whom it names as the successor.
    static let handOverPurpose = "dyninka-handover"

    // MARK: Old side

    /// A request on the control listener: only a signed `POST /handover`.
    func controlRequest(_ head: HTTPHead, on connection: InboundConnection) {
        func refuse(_ status: Int, _ message: String) {
            log.warning("control: refused \(head.method) \(head.target): \(message)")
            connection.respond(failure: ServiceFailure(service: configuration.service, kind: .badRoute, message: message, status: status),
                               forceClose: true)
        }
        guard head.method == "POST", head.target == "/handover" else { return refuse(404, "the control port takes POST /handover only") }
        guard let key = context.appKey else { return refuse(403, "a hand-over needs the app key (--app-key-file or DYNINKA_APP_KEY)") }
        guard let successorText = head.value(of: "dyninka-successor"), let successor = PeerAddress(parsing: successorText),
              let auth = head.value(of: "dyninka-auth") else {
            return refuse(400, "POST /handover needs Dyninka-Successor: IP:PORT and Dyninka-Auth")
        }
        guard case .app = key.checkControl(auth, Self.handOverPurpose, successorText) else {
            return refuse(403, "its Dyninka-Auth is not this app's key over the successor it names")
        }
        guard !handOver.active, !context.draining || handOver.waitingForPull else {
            return refuse(409, "this instance has handed over already, or is stopping without a hand-over")
        }
        handOver.active = true
        handOver.successor = successor
        handOver.controlConnection = connection
        log.info("hand-over to \(successor): requests go there from now on; the state follows once no call runs (within \(handOverBound) ms)")
        context.callsSettled = { [unowned self] in trySeal() }
        do {
            let last = try LoopTimer(loop: context.loop)
            last.start(after: UInt64(handOverBound)) { [unowned self] in
                seal(reason: "\(context.callsRunning) call(s) still running after \(handOverBound) ms")
            }
            handOver.timers.append(last)
        } catch {
            seal(reason: "no timer for the hand-over's bound")
        }
        trySeal()
    }

    /// Answers the successor's control request with the state of every service, in one body:
    /// `dyninka-handover 1`, then per service `NAME HASH LENGTH` and LENGTH bytes of JSON.
    func answerHandOver(on connection: InboundConnection) {
        let body = ByteStore(capacity: 256)
        body.append("dyninka-handover 1\n")
        var values = 0
        for service in stateServices {
            let json = handedOverState(of: service)
            values += HandOver.topLevelMembers(json)
            body.append(string: "\(service.name) \(service.stateHash.isEmpty ? "-" : service.stateHash) \(json.count)\n")
            json.withUnsafeBytes { body.append($0) }
        }
        log.info("handed over: state of \(configuration.services.joined(separator: ", ")) sent to \(handOver.successor.map { "\($0)" } ?? "?") (\(values) value(s), \(body.count) bytes); relaying requests there")
        connection.respond(status: 200, body: body.owned, forceClose: true) { head in head.append("Content-Type: text/plain\r\n") }
    }

    /// A request after the hand-over began: passed to the successor as it came (route, arguments,
    /// signature and deadline unchanged), its answer streamed back.
    func relayToSuccessor(_ request: Request, on connection: InboundConnection) {
        guard let successor = handOver.successor else { return }
        let name = configuration.service
        let target = handOver.successorTargets[request.path] ?? HopTarget(service: name, address: successor, path: request.path, fields: [])
        handOver.successorTargets[request.path] = target
        let head = request.head
        let started = request.started
        let trace = request.trace
        context.sendHop(target, body: request.body ?? .empty, relayTo: connection, trace: trace, extra: { line in
            // StaticString names: HTTPHead looks fields up by them without allocating.
            func pass(_ field: StaticString, as name: StaticString) {
                guard head.has(field) else { return }
                line.append(name)
                head.appendValue(of: field, to: line)
                line.append("\r\n")
            }
            pass("dyninka-route", as: "Dyninka-Route: ")
            pass("dyninka-args", as: "Dyninka-Args: ")
            pass("dyninka-auth", as: "Dyninka-Auth: ")
            pass("dyninka-deadline", as: "Dyninka-Deadline: ")
        }) { outcome in
            let timing = HopTiming(name: name, started: started, trace: trace, forwardStarted: started)
            switch outcome {
            case .failed(let failure): connection.send(failure, timing: timing)
            case .response(let response, let body): connection.send(Answer(status: response.status, relayed: response, timing: timing), body: body)
            case .relaying(let response, let hop): connection.relay(Answer(status: response.status, relayed: response, timing: timing), from: hop)
            }
        }
    }

    // MARK: New side

    /// Holds requests (and readiness) and asks the predecessors at `from` (NAME:PORT) for the
    /// state, on a thread of its own (a lookup and one exchange, once, at start).
    func pullState(from: String) throws(HostStartupError) {
        guard let predecessors = PeerAddress(parsing: from) else {
            throw HostStartupError("--handover-from must be NAME:PORT (a headless Service and the control port), got '\(from)'")
        }
        guard let key = context.appKey else {
            throw HostStartupError("--handover-from needs the app key (--app-key-file or DYNINKA_APP_KEY): the state is asked for with it")
        }
        let own = configuration.podIP ?? (configuration.host == "0.0.0.0" ? nil : configuration.host)
        guard let own else { throw HostStartupError("--handover-from needs --pod-ip (or a --host other than 0.0.0.0): the old instance relays to it") }
        let successor = "\(own):\(boundPort)"
        handOver.held = []
        handOver.pending = configuration.services
        handOver.holdingSince = EventLoop.nanoseconds()
        let auth = key.signControl(Self.handOverPurpose, successor, validFor: configuration.stateWait)
        let wait = configuration.stateWait
        let wakeup = context.wakeup
        let request = Array(("POST /handover HTTP/1.1\r\nHost: \(predecessors)\r\nDyninka-Successor: \(successor)\r\n"
                             + "Dyninka-Auth: \(auth)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").utf8)
        let pull = StatePull(name: predecessors.host, port: predecessors.port, own: own, request: request, waitMilliseconds: wait)
        // The host outlives the pull; only the loop touches it (the result comes back through the wakeup).
        let host = LoopOwned(self)
        Thread {
            let result = pull.run()
            wakeup.submit { host.value.tookPulled(result, from: from) }
        }.start()
    }

    /// On the loop: what the pull brought.
    fileprivate func tookPulled(_ result: StatePull.Result, from: String) {
        switch result {
        case .state(let bytes, let address):
            log.info("the instance at \(address) handed its state over")
            restoreSections(bytes, from: address)
        case .noPredecessor where context.checkpoint != nil:
            readCheckpoint(because: "no other instance at \(from)")
            return
        case .failed(let why) where context.checkpoint != nil:
            log.warning("no predecessor handed its state over: \(why)")
            readCheckpoint(because: "no predecessor handed its state over")
            return
        case .noPredecessor:
            for service in handOver.pending {
                handOver.outcomes.append((service, HandOver.Outcome(restored: true, values: 0, bytes: 0, code: "restored",
                                                                    detail: "no predecessor at \(from): the first instance", heldRequests: 0,
                                                                    heldMilliseconds: 0)))
            }
            log.info("no other instance at \(from): starting with the initial state")
            handOver.pending.removeAll()
        case .failed(let why):
            for service in handOver.pending {
                handOver.outcomes.append((service, HandOver.Outcome(restored: false, values: 0, bytes: 0, code: "no-state", detail: why,
                                                                    heldRequests: 0, heldMilliseconds: 0)))
            }
            handOver.pending.removeAll()
        }
        finishHolding(resultsAt: nil)
    }

    /// Restores each service from a hand-over body (see `answerHandOver`).
    private func restoreSections(_ bytes: [UInt8], from address: String) {
        var index = 0
        func line() -> String? {
            guard let newline = bytes[index...].firstIndex(of: 10) else { return nil }
            defer { index = newline + 1 }
            return String(decoding: bytes[index..<newline], as: UTF8.self)
        }
        guard line() == "dyninka-handover 1" else {
            for service in handOver.pending {
                handOver.outcomes.append((service, HandOver.Outcome(restored: false, values: 0, bytes: 0, code: "unreadable",
                                                                    detail: "the answer of \(address) is not a hand-over", heldRequests: 0,
                                                                    heldMilliseconds: 0)))
            }
            handOver.pending.removeAll()
            return
        }
        while let header = line() {
            let fields = header.split(separator: " ").map(String.init)
            guard fields.count == 3, let length = Int(fields[2]), length >= 0, index + length <= bytes.count else { break }
            let json = Array(bytes[index..<index + length])
            index += length
            guard handOver.pending.contains(fields[0]) else { continue }
            let hash = fields[1] == "-" ? "" : fields[1]
            restoreState(HandOver.stateFile(service: fields[0], hash: hash, json: json), service: fields[0], from: "the state from \(address)")
        }
        for service in handOver.pending {
            handOver.outcomes.append((service, HandOver.Outcome(restored: false, values: 0, bytes: 0, code: "not-this-service",
                                                                detail: "\(address) did not serve \(service)", heldRequests: 0, heldMilliseconds: 0)))
        }
        handOver.pending.removeAll()
    }
}

/// The new side's one exchange with its predecessors, off the loop: every address of the name but
/// its own, each asked in turn until one hands over.
struct StatePull: Sendable {
    enum Result: Sendable {
        /// The state, and who sent it.
        case state([UInt8], String)
        /// The name lists no other instance: the first one.
        case noPredecessor
        /// Others are there, none handed over: why.
        case failed(String)
    }

    let name: String
    let port: Int
    let own: String
    let request: [UInt8]
    let waitMilliseconds: Int

    func run() -> Result {
        let addresses = Self.lookUp(name)
        let others = addresses.filter { $0 != own }
        if addresses.isEmpty { return .failed("cannot resolve '\(name)'") }
        if others.isEmpty { return .noPredecessor }
        var reasons: [String] = []
        for address in others {
            switch exchange(address) {
            case .success(let body): return .state(body, "\(address):\(port)")
            case .failure(let why): reasons.append("\(address):\(port): \(why)")
            }
        }
        return .failed("no predecessor handed over: " + reasons.joined(separator: "; "))
    }

    /// Every IPv4 address of `name`, in the resolver's order, once each.
    static func lookUp(_ name: String) -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &list) == 0 else { return [] }
        defer { freeaddrinfo(list) }
        var found: [String] = []
        var next = list
        while let entry = next {
            if let address = entry.pointee.ai_addr, entry.pointee.ai_family == AF_INET {
                var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
                var ip = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                inet_ntop(AF_INET, &ip, &text, socklen_t(INET_ADDRSTRLEN))
                let string = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !found.contains(string) { found.append(string) }
            }
            next = entry.pointee.ai_next
        }
        return found
    }

    enum ExchangeResult { case success([UInt8]); case failure(String) }

    /// POSTs the hand-over request to `address` and reads the whole answer (the old side answers
    /// once no call runs there, within its bound).
    func exchange(_ address: String) -> ExchangeResult {
        let fd: Int32
        switch blockingConnect(host: address, port: port, timeoutMilliseconds: waitMilliseconds) {
        case .success(let connected): fd = connected
        case .failure(let failure): return .failure(failure.description)
        }
        defer { close(fd) }
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == request.count else { return .failure("cannot send the request") }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { return .failure(errno == EAGAIN ? "no answer within \(waitMilliseconds) ms (--state-wait)" : "the connection failed") }
            if n == 0 { break }
            response += buffer[0..<n]
        }
        let marker: [UInt8] = [13, 10, 13, 10]
        guard let end = (0...max(0, response.count - 4)).first(where: { response[$0..<$0 + 4].elementsEqual(marker) }) else {
            return .failure("no HTTP answer")
        }
        let statusLine = String(decoding: response.prefix { $0 != 13 }, as: UTF8.self)
        let body = Array(response[(end + 4)...])
        guard statusLine.hasPrefix("HTTP/1.1 200") else {
            return .failure("\(statusLine): \(String(decoding: body.prefix(300), as: UTF8.self))")
        }
        return .success(body)
    }
}

/// A blocking TCP connection to `host` (a name or an IPv4 address) at `port`, with send and
/// receive timeouts, for the host's exchanges off the loop (a predecessor's state, the checkpoint
/// store); the caller closes it.
func blockingConnect(host: String, port: Int, timeoutMilliseconds: Int) -> Result<Int32, BlockingFailure> {
    var hints = addrinfo()
    hints.ai_family = AF_INET
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var list: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { return .failure(BlockingFailure("cannot resolve \(host)")) }
    defer { freeaddrinfo(list) }
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return .failure(BlockingFailure("no socket")) }
    var timeout = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    guard connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
        let why = String(cString: strerror(errno))
        close(fd)
        return .failure(BlockingFailure("cannot connect (\(why))"))
    }
    return .success(fd)
}

/// Why a blocking exchange off the loop failed.
struct BlockingFailure: Error, CustomStringConvertible, Sendable {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A loop-owned object carried through a thread and back to the loop, where alone it is used.
struct LoopOwned<Value: AnyObject>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
