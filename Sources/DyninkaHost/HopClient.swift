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
    case response(HTTPHead, ByteBuffer)
    /// No usable response: the failure names the hop's service.
    case failed(ServiceFailure)
}

/// One outbound request to a peer service: connect, send, collect the whole response.
/// Keep-alive-free: one connection per hop, closed once the response is in.
final class HopClient: HTTPParserDelegate, TCPHandleDelegate, Expiring {
    // The host outlives every request and connection it serves.
    private unowned(unsafe) let host: ServiceHost
    private let target: HopTarget
    /// The service being called (named in failures).
    var service: String { target.service }
    let address: PeerAddress
    private let body: UnsafeRawBufferPointer
    private let owner: AnyObject?
    private var completion: ((HopOutcome) -> Void)?
    private var handle: TCPHandle?
    private var parser: HTTPParser?
    private var responseHead: HTTPHead?
    private var responseBody: ByteBuffer?
    private(set) var deadline: UInt64 = 0
    var trackSlot = -1
    private var connected = false
    private var started: UInt64 = 0
    /// The response timeout for this hop: the host's, or less when the request's deadline is nearer.
    var responseTimeout: Int = 0
    private var retryTimer: LoopTimer?
    /// Every address the peer's name resolved to, tried in order until one accepts; empty for a
    /// numeric address (no array per hop).
    private var candidates: [SocketAddress] = []
    private var candidate = 0
    /// Header lines for this request only (the remaining deadline), added to the target's head.
    private let extraHead: ByteBuffer?

    init(host: ServiceHost, target: HopTarget, address: PeerAddress, extraHead: ByteBuffer?, body: UnsafeRawBufferPointer,
         owner: AnyObject?, completion: @escaping (HopOutcome) -> Void) {
        self.extraHead = extraHead
        self.host = host
        self.target = target
        self.address = address
        self.body = body
        self.owner = owner
        self.completion = completion
    }

    func start() {
        started = EventLoop.nanoseconds()
        if responseTimeout == 0 { responseTimeout = host.configuration.responseTimeout }
        deadline = started + UInt64(min(host.configuration.connectTimeout, responseTimeout)) * 1_000_000
        host.track(self)
        if let numeric = target.socketAddress { return connect(numeric) }
        // A name: its addresses come from the host's cache (no lookup per hop).
        let entry = target.nameEntry ?? host.names.entry(address.host, port: address.port)
        target.nameEntry = entry
        if let known = host.names.fresh(entry) {
            // The usual case: resolved a moment ago; no closure, no copy.
            candidates = known
            candidate = 0
            return connect(known[0])
        }
        host.names.addresses(of: entry) { [self] result in
            guard completion != nil else { return }
            switch result {
            case .failure(let error):
                fail(.unreachable, "cannot resolve '\(address.host)' for service '\(service)' (\(error.reason)); check --peers or the placement file")
            case .success(let addresses):
                candidates = addresses
                candidate = 0
                connect(addresses[0])
            }
        }
    }

    private func connect(_ socketAddress: SocketAddress) {
        let handle: TCPHandle
        do {
            handle = try TCPHandle.connect(loop: host.loop, to: socketAddress, delegate: self)
        } catch {
            return connectFailed(error)
        }
        self.handle = handle
        if parser == nil {
            let parser = host.takeParser(request: false)
            parser.delegate = self
            self.parser = parser
        }
        // The request goes out at once: on loopback the connection is usually established by
        // now; otherwise the write waits for it. The head comes from the host's scratch buffer
        // (the write copies what it cannot send at once).
        target.writeHead(contentLength: body.count, extra: extraHead, into: host.scratch)
        switch handle.write(host.scratch.bytes, body, owners: (nil, owner)) {
        case .done:
            established()
        case .pending:
            // Still connecting, or a body larger than the socket buffer on an established connection.
            if handle.remoteAddress != nil { established() }
        case .failed(let error):
            connectionFailed(error)
        }
    }

    /// The connection is up: from now on the response timeout applies.
    private func established() {
        guard !connected else { return }
        connected = true
        deadline = EventLoop.nanoseconds() + UInt64(responseTimeout) * 1_000_000
    }

    func handleWriteDone(_ error: LoopError?) {
        if let error { connectionFailed(error) } else { established() }
    }

    /// The connection failed before a response: refused and never established means the service
    /// may be restarting (retried within the window); anything else is a failed send.
    private func connectionFailed(_ error: LoopError) {
        guard completion != nil else { return }
        handle?.close()
        handle = nil
        if connected {
            fail(.unreachable, "connection to service '\(service)' at \(address) failed while sending (\(error.reason))")
        } else {
            connectFailed(error)
        }
    }

    private func connectFailed(_ error: LoopError) {
        guard completion != nil else { return }
        // A name may have several addresses (localhost: ::1, then 127.0.0.1): try the next one.
        if candidate + 1 < candidates.count {
            candidate += 1
            return connect(candidates[candidate])
        }
        if let entry = target.nameEntry { host.names.invalidate(entry) }
        // A refused connection may be a service restarting on its port: try again for a short
        // while (the retry window), then give up with 502.
        let elapsed = (EventLoop.nanoseconds() - started) / 1_000_000
        if error.isConnectionRefused, let first = candidates.first ?? target.socketAddress,
           elapsed + 25 < UInt64(host.configuration.connectRetry), let timer = try? LoopTimer(loop: host.loop) {
            retryTimer = timer
            timer.start(after: 25) { [self] in
                timer.close()
                retryTimer = nil
                guard completion != nil else { return }
                candidate = 0
                connect(first)
            }
            return
        }
        let tried = candidates.count > 1 ? " (tried \(candidates.map(\.description).joined(separator: ", ")))" : ""
        fail(.unreachable, "cannot reach service '\(service)' at \(address)\(tried) (\(error.reason)); is `dyninka-host serve --service \(service)` running?")
    }

    func handleRead(_ event: ReadEvent) { read(event) }

    private func read(_ event: ReadEvent) {
        guard let parser, completion != nil else { return }
        let result: HTTPFeedResult
        switch event {
        case .data(let bytes): result = parser.feed(bytes)
        case .end: result = parser.finish()
        case .failed(let error):
            guard connected else { return connectionFailed(error) }
            return fail(.unreachable, "service '\(service)' at \(address) reset the connection (\(error.reason))")
        }
        if refused {
            return finish(.failed(ServiceFailure(
                service: host.configuration.service, kind: .overloaded,
                message: "'\(host.configuration.service)' holds \(host.bufferedBytes) bytes of requests and responses (limit \(host.configuration.maxBufferedBytes), --max-buffered-bytes); the answer of '\(service)' does not fit now; retry after 1 s")))
        }
        switch result {
        case .needMore:
            if case .end = event {
                fail(.unreachable, "service '\(service)' at \(address) closed the connection without answering")
            }
        case .messageComplete:
            // Everything the peer sent is read: close with RST, so neither side keeps a
            // TIME_WAIT entry or exchanges FINs (keep-alive-free load would exhaust ports).
            handle?.setResetOnClose()
            finish(.response(responseHead!, responseBody ?? ByteBuffer()))
        case .failed(let error):
            fail(.unreachable, "service '\(service)' at \(address) sent an invalid response (\(error))")
        }
    }

    func parserHead(_ head: HTTPHead) {
        responseHead = head
        let declared = head.contentLength ?? 0
        // The declared body counts against --max-buffered-bytes while it is collected.
        if declared > 0, !host.reserveBuffer(declared) { return refused = true }
        charged = declared
        responseBody = ByteBuffer(capacity: declared > 0 ? declared : 4096)
    }

    func parserBody(_ bytes: UnsafeRawBufferPointer) {
        guard !refused, let body = responseBody else { return }
        if body.count + bytes.count > charged {
            // A body without Content-Length counts as it grows.
            guard host.reserveBuffer(bytes.count) else { return refused = true }
            charged += bytes.count
        }
        body.append(bytes)
    }

    /// Bytes of the response counted against --max-buffered-bytes.
    private var charged = 0
    /// The response does not fit in --max-buffered-bytes now.
    private var refused = false

    func expire() {
        // A request still being written when the connect deadline passes may be a large body on
        // an established connection: then the response deadline applies from now on.
        if !connected, let handle, handle.remoteAddress != nil {
            return established()
        }
        if connected {
            fail(.timeout, "service '\(service)' at \(address) did not answer within \(responseTimeout) ms")
        } else {
            fail(.timeout, "service '\(service)' at \(address) did not accept a connection within \(host.configuration.connectTimeout) ms")
        }
    }

    private func fail(_ kind: FailureKind, _ message: String) {
        host.metrics.hopFailures += 1
        host.log.warning(message)
        finish(.failed(ServiceFailure(service: service, kind: kind, message: message)))
    }

    private func finish(_ outcome: HopOutcome) {
        guard let completion else { return }
        self.completion = nil
        retryTimer?.close()
        retryTimer = nil
        host.untrack(self)
        host.bufferedBytes -= charged
        charged = 0
        handle?.close()
        handle = nil
        if let parser { host.returnParser(parser) }
        parser = nil
        completion(outcome)
    }
}
