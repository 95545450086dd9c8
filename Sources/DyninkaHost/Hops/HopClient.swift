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

/// One outbound request to a peer service: connect, send, then either collect the whole
/// response (a dependency's value, an orchestrated step) or relay it cut-through to the client
/// connection named at the start (the next hop's answer): each piece of the body goes from the
/// read block it arrived in to the client's socket, never into a buffer of ours, and reading
/// from the peer pauses while the client's socket is full.
/// Keep-alive-free: one connection per hop, closed once the response is in.
final class HopClient: HTTPParserDelegate, TCPHandleDelegate, Expiring {
    // The context outlives every request.
    private unowned(unsafe) let context: HostContext
    private let target: HopTarget
    /// The service being called (named in failures).
    var service: String { target.service }
    let address: PeerAddress
    private let body: OwnedBytes
    private var completion: ((HopOutcome) -> Void)?
    /// Where the response streams when it is relayed cut-through; nil: collect it.
    private let relayTo: InboundConnection?
    /// The connection the body streams to, once its head is answered.
    private var sink: InboundConnection?
    /// Reading from the peer is paused until the client's socket takes what it was given.
    private var paused = false
    private var handle: TCPHandle?
    private var parser: HTTPParser?
    private var responseHead: HTTPHead?
    private var responseBody: ByteStore?
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
    private let extraHead: ByteStore?

    init(context: HostContext, target: HopTarget, address: PeerAddress, extraHead: ByteStore?, body: OwnedBytes,
         relayTo: InboundConnection?, completion: @escaping (HopOutcome) -> Void) {
        self.extraHead = extraHead
        self.context = context
        self.target = target
        self.address = address
        self.body = body
        self.relayTo = relayTo
        self.completion = completion
    }

    func start() {
        started = EventLoop.nanoseconds()
        if responseTimeout == 0 { responseTimeout = context.configuration.responseTimeout }
        deadline = started + UInt64(min(context.configuration.connectTimeout, responseTimeout)) * 1_000_000
        context.track(self)
        if let numeric = target.socketAddress { return connect(numeric) }
        // A name: its addresses come from the host's cache (no lookup per hop).
        let entry = target.nameEntry ?? context.names.entry(address.host, port: address.port)
        target.nameEntry = entry
        if let known = context.names.fresh(entry) {
            // The usual case: resolved a moment ago; no closure, no copy.
            candidates = known
            candidate = 0
            return connect(known[0])
        }
        context.names.addresses(of: entry) { [self] result in
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
            handle = try TCPHandle.connect(loop: context.loop, to: socketAddress, delegate: self)
        } catch {
            return connectFailed(error)
        }
        self.handle = handle
        if parser == nil {
            let parser = context.takeParser(request: false)
            parser.delegate = self
            self.parser = parser
        }
        // The request goes out at once: on loopback the connection is usually established by
        // now; otherwise the write waits for it. The head comes from the host's scratch buffer
        // (the write copies what it cannot send at once).
        target.writeHead(contentLength: body.count, extra: extraHead, into: context.scratch)
        switch handle.write(context.scratch.bytes, body) {
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
        if let entry = target.nameEntry { context.names.invalidate(entry) }
        // A refused connection may be a service restarting on its port: try again for a short
        // while (the retry window), then give up with 502.
        let elapsed = (EventLoop.nanoseconds() - started) / 1_000_000
        if error.isConnectionRefused, let first = candidates.first ?? target.socketAddress,
           elapsed + 25 < UInt64(context.configuration.connectRetry), let timer = try? LoopTimer(loop: context.loop) {
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
        guard let parser, completion != nil || sink != nil else { return }
        let result: HTTPFeedResult
        switch event {
        case .data(let bytes):
            if sink != nil { deadline = EventLoop.nanoseconds() + UInt64(responseTimeout) * 1_000_000 }
            // A read that filled its block is followed at once by another one (libuv reads on
            // while reads come back full): pieces wait for it and go out together.
            moreFollows = bytes.count == ReadBlock.size
            feeding = true
            result = parser.feed(bytes)
            feeding = false
        case .end:
            feeding = true
            result = parser.finish()
            feeding = false
        case .failed(let error):
            guard connected else { return connectionFailed(error) }
            return fail(.unreachable, "service '\(service)' at \(address) reset the connection (\(error.reason))")
        }
        if completion == nil, sink == nil {
            // Relaying stopped inside the parser's callbacks (the client went away, or nobody
            // took the relay): let go now that the parser has returned.
            return release()
        }
        if refused {
            return finish(.failed(ServiceFailure(
                service: context.configuration.service, kind: .overloaded,
                message: context.overloadMessage("the answer of '\(service)'"))))
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
            if let sink {
                release()
                sink.relayEnded()
            } else if completion != nil {
                finish(.response(responseHead!, responseBody.map { OwnedBytes($0.bytes, owner: $0) } ?? .empty))
            }
        case .failed(let error):
            fail(.unreachable, "service '\(service)' at \(address) sent an invalid response (\(error))")
        }
    }

    func parserHead(_ head: HTTPHead) {
        // A body whose length is declared streams through; anything else (chunked, or ended by
        // the peer's close: not what a Dyninka host sends) is collected and answered whole.
        if relayTo != nil, let completion, head.contentLength != nil {
            // The completion answers with `connection.relay(_:from:)`, which attaches the sink.
            self.completion = nil
            relayLength = head.contentLength ?? 0
            completion(.relaying(head, self))
            return
        }
        responseHead = head
        let declared = head.contentLength ?? 0
        // The declared body counts against --max-buffered-bytes while it is collected.
        if declared > 0, !context.reserveBuffer(declared) { return refused = true }
        charged = declared
        responseBody = ByteStore(capacity: declared > 0 ? declared : 4096)
    }

    func parserBody(_ bytes: UnsafeRawBufferPointer) {
        if let sink {
            relayedBytes += bytes.count
            // Cut-through: the piece stays in the read block it arrived in until the client's
            // socket has taken it; meanwhile the loop reads into another block.
            if !sink.relayPiece(context.loop.readBlock.own(bytes), moreFollows: moreFollows), !paused, let handle {
                paused = true
                handle.stopReading()
                deadline = 0
            }
            return
        }
        guard !refused, let body = responseBody else { return }
        if body.count + bytes.count > charged {
            // A body without Content-Length counts as it grows.
            guard context.reserveBuffer(bytes.count) else { return refused = true }
            charged += bytes.count
        }
        body.append(bytes)
    }

    /// The last read filled its block: another read follows in this loop iteration.
    private var moreFollows = false

    func handleReadDrained() {
        // The next read came back empty: what waits for it goes out now.
        if moreFollows, let sink {
            moreFollows = false
            if !sink.flushRelay(), !paused, let handle {
                paused = true
                handle.stopReading()
                deadline = 0
            }
        }
    }

    /// The connection this hop was sent for takes the body from now on.
    func attach(_ connection: InboundConnection) {
        guard connection === relayTo, parser != nil else { return }
        sink = connection
    }

    /// The client's socket took everything relayed so far: read on.
    func resumeRelay() {
        guard paused, sink != nil, let handle else { return }
        paused = false
        deadline = EventLoop.nanoseconds() + UInt64(responseTimeout) * 1_000_000
        handle.startReading(self)
    }

    /// The client connection is gone: stop relaying and drop the peer's connection.
    func abortRelay() {
        guard sink != nil else { return }
        sink = nil
        handle?.setResetOnClose()
        // Never return the parser from inside its own callbacks: `read` lets go once it returns.
        if !feeding { release() }
    }

    /// Inside the parser's feed: releasing waits until it returns.
    private var feeding = false
    /// Body bytes relayed so far, and how many the head declared (for a failure's message).
    private var relayedBytes = 0
    private var relayLength = 0

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
            fail(.timeout, "service '\(service)' at \(address) did not accept a connection within \(context.configuration.connectTimeout) ms")
        }
    }

    private func fail(_ kind: FailureKind, _ message: String) {
        context.metrics.hopFailures += 1
        if let sink {
            context.log.warning("\(message); the response relayed to the client is cut short after \(relayedBytes) of \(relayLength) body bytes")
            // The head is answered already: the client's connection can only be cut short.
            handle?.setResetOnClose()
            release()
            return sink.relayBroken()
        }
        context.log.warning(message)
        finish(.failed(ServiceFailure(service: service, kind: kind, message: message)))
    }

    private func finish(_ outcome: HopOutcome) {
        guard let completion else { return }
        self.completion = nil
        release()
        completion(outcome)
    }

    /// Lets go of everything the hop holds: timers, its deadline, counted bytes, the connection
    /// and the parser.
    private func release() {
        sink = nil
        retryTimer?.close()
        retryTimer = nil
        context.untrack(self)
        context.bufferedBytes -= charged
        charged = 0
        handle?.close()
        handle = nil
        if let parser { context.returnParser(parser) }
        parser = nil
    }
}
