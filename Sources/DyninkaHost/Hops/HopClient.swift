import DyninkaHTTP
import DyninkaLoop

/// Something with a deadline that the host's sweep timer enforces.
protocol Expiring: AnyObject {
    /// Monotonic nanoseconds after which `expire()` is called; 0 means none.
    var deadline: UInt64 { get }
    func expire()
    /// Where the host's list of deadlines holds this object; -1 when it is not in it.
    var trackSlot: Int { get set }
}

/// What came back from a next hop.
enum HopOutcome {
    /// A complete response, any status; the body is held as bytes, never parsed.
    case response(HTTPHead, OwnedBytes)
    /// A hop sent with `relayTo`: the response's head is in and its body streams to that
    /// connection as it arrives. Answer with `connection.relay(_:from:)` now.
    case relaying(HTTPHead, HopClient)
    /// No usable response: the failure names the hop's service.
    case failed(ServiceFailure)
}

/// One outbound request to a peer service, sent with the host's client engine
/// (`ClientConnection`, keep-alive-free, closed with RST): then either collect the whole
/// response (a dependency's value, an orchestrated step) or relay it cut-through to the client
/// connection named at the start (the next hop's answer): each piece of the body goes from the
/// read block it arrived in to the client's socket, never into a buffer of ours, and reading
/// from the peer pauses while the client's socket is full. Failures name the hop's service.
final class HopClient: ClientConnectionUser {
    // The context outlives every request.
    private unowned(unsafe) let context: HostContext
    private let target: HopTarget
    /// The service being called (named in failures).
    var service: String { target.service }
    let address: PeerAddress
    let requestBody: OwnedBytes
    private var completion: ((HopOutcome) -> Void)?
    /// Where the response streams when it is relayed cut-through; nil: collect it.
    private let relayTo: InboundConnection?
    /// The relay the body streams through, once its head is answered.
    private var relay: Relay?
    private var connection: ClientConnection?
    private var responseHead: HTTPHead?
    private var responseBody: ByteStore?
    /// The response timeout for this hop: the host's, or less when the request's deadline is nearer.
    var responseTimeout: Int = 0
    /// Header lines for this request only, added to the target's head.
    private let extraHead: ByteStore?
    /// A hop of the app: the deadline to pass on and the key to sign with (see AppKey).
    var appHop: AppHop?
    /// The caller's trace context: its span becomes the parent in this request's `traceparent`.
    private let trace: TraceContext?
    /// Bytes of the response counted against --max-buffered-bytes.
    private var charged = 0
    /// The response does not fit in --max-buffered-bytes now.
    private var refused = false

    init(context: HostContext, target: HopTarget, address: PeerAddress, extraHead: ByteStore?, trace: TraceContext?, body: OwnedBytes,
         relayTo: InboundConnection?, completion: @escaping (HopOutcome) -> Void) {
        self.extraHead = extraHead
        self.trace = trace
        self.context = context
        self.target = target
        self.address = address
        requestBody = body
        self.relayTo = relayTo
        self.completion = completion
    }

    func start() {
        if responseTimeout == 0 { responseTimeout = context.configuration.responseTimeout }
        if let numeric = target.numericAddresses { return send(to: numeric) }
        // A name: its addresses come from the host's cache (no lookup per hop).
        let entry = target.nameEntry ?? context.names.entry(address.host, port: address.port)
        target.nameEntry = entry
        if let known = context.names.fresh(entry) { return send(to: known) }
        context.names.addresses(of: entry) { [self] result in
            guard completion != nil else { return }
            switch result {
            case .failure(let error):
                fail(.unreachable, "cannot resolve '\(address.host)' for service '\(service)' (\(error.reason)); check --peers or the placement file")
            case .success(let addresses):
                send(to: addresses)
            }
        }
    }

    private func send(to addresses: [SocketAddress]) {
        let connection = ClientConnection(context: context, options: context.hopOptions)
        self.connection = connection
        connection.send(to: addresses, user: self, connectTimeout: context.hopConnectTimeout, responseTimeout: responseTimeout)
    }

    func requestHead(into scratch: ByteStore) -> UnsafeRawBufferPointer {
        // The head comes from the host's scratch buffer (the write copies what it cannot send at once).
        target.writeHead(contentLength: requestBody.count, extra: extraHead, trace: trace, appHop: appHop,
                         validFor: responseTimeout, into: scratch)
        return scratch.bytes
    }

    // MARK: The response

    func responseHead(_ head: HTTPHead) {
        // A body whose length is declared streams through; anything else (chunked, or ended by
        // the peer's close: not what a Dyninka host sends) is collected and answered whole.
        if relayTo != nil, let completion, head.contentLength != nil {
            // The completion answers with `connection.relay(_:from:)`, which attaches the sink.
            self.completion = nil
            completion(.relaying(head, self))
            if relay == nil { connection?.abort() }
            return
        }
        responseHead = head
        let declared = head.contentLength ?? 0
        // The declared body counts against --max-buffered-bytes while it is collected.
        if declared > 0, !context.reserveBuffer(declared) { return refuse() }
        charged = declared
        responseBody = ByteStore(capacity: declared > 0 ? declared : 4096)
    }

    func responseBody(_ bytes: UnsafeRawBufferPointer) {
        if let relay {
            connection?.madeProgress()
            // Cut-through: the piece stays in the read block it arrived in until the client's
            // socket has taken it; meanwhile the loop reads into another block.
            if !relay.piece(context.loop.readBlock.own(bytes)) { connection?.pause() }
            return
        }
        guard !refused, let body = responseBody else { return }
        if body.count + bytes.count > charged {
            // A body without Content-Length counts as it grows.
            guard context.reserveBuffer(bytes.count) else { return refuse() }
            charged += bytes.count
        }
        body.append(bytes)
    }

    func readConsumed() {
        // A read ended before the body: a relayed head still waiting goes out now.
        if let relay, !relay.flush() { connection?.pause() }
    }

    func responseComplete(kept: Bool) {
        connection = nil
        if let relay {
            self.relay = nil
            return relay.ended()
        }
        finish(.response(responseHead!, responseBody.map { OwnedBytes($0.bytes, owner: $0) } ?? .empty))
    }

    /// The response does not fit in --max-buffered-bytes now: 503 from this host.
    private func refuse() {
        guard !refused else { return }
        refused = true
        connection?.abort()
        connection = nil
        finish(.failed(ServiceFailure(service: context.configuration.service, kind: .overloaded,
                                      message: context.overloadMessage("the answer of '\(service)'"))))
    }

    // MARK: Relaying

    /// The body goes through `relay` from now on, to the connection this hop was sent for;
    /// false when it cannot (another connection, or the response is gone already).
    func attach(_ relay: Relay) -> Bool {
        guard relay.sink === relayTo, connection != nil else { return false }
        self.relay = relay
        return true
    }

    /// The client's socket took everything relayed so far: read on.
    func resumeRelay() {
        guard relay != nil else { return }
        connection?.resume()
    }

    /// The client connection is gone: stop relaying and drop the peer's connection.
    func abortRelay() {
        guard relay != nil else { return }
        relay = nil
        connection?.abort()
        connection = nil
    }

    // MARK: Failures

    func requestFailed(_ failure: ClientFailure, retryable: Bool) {
        let candidates = connection?.addresses ?? []
        connection = nil
        switch failure {
        case .connect(let error):
            if let entry = target.nameEntry { context.names.invalidate(entry) }
            let tried = candidates.count > 1 ? " (tried \(candidates.map(\.description).joined(separator: ", ")))" : ""
            fail(.unreachable, "cannot reach service '\(service)' at \(address)\(tried) (\(error.reason)); is `dyninka-host serve --service \(service)` running?")
        case .send(let error):
            fail(.unreachable, "connection to service '\(service)' at \(address) failed while sending (\(error.reason))")
        case .reset(let error):
            fail(.unreachable, "service '\(service)' at \(address) reset the connection (\(error.reason))")
        case .closedEarly:
            fail(.unreachable, "service '\(service)' at \(address) closed the connection without answering")
        case .invalid(let error):
            fail(.unreachable, "service '\(service)' at \(address) sent an invalid response (\(error))")
        case .connectTimeout(let milliseconds):
            fail(.timeout, "service '\(service)' at \(address) did not accept a connection within \(milliseconds) ms")
        case .responseTimeout(let milliseconds):
            fail(.timeout, "service '\(service)' at \(address) did not answer within \(milliseconds) ms")
        }
    }

    private func fail(_ kind: FailureKind, _ message: String) {
        context.metrics.hopFailures += 1
        if let relay {
            // The head is answered already: the client's connection can only be cut short.
            self.relay = nil
            context.log.warning("\(message); the response relayed to the client is cut short after \(relay.relayed) of \(relay.declared) body bytes")
            return relay.broken()
        }
        context.log.warning(message)
        finish(.failed(ServiceFailure(service: service, kind: kind, message: message)))
    }

    private func finish(_ outcome: HopOutcome) {
        guard let completion else { return }
        self.completion = nil
        context.bufferedBytes -= charged
        charged = 0
        completion(outcome)
    }
}
