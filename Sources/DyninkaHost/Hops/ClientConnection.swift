import DyninkaHTTP
import DyninkaLoop

/// Why a client connection gave up on a request.
enum ClientFailure {
    /// No connection could be made (every address tried, refusals retried within the window).
    case connect(LoopError)
    /// The connection failed while the request was being sent.
    case send(LoopError)
    /// The connection failed after the request was sent.
    case reset(LoopError)
    /// The peer closed before its response was complete.
    case closedEarly
    /// The response was not valid HTTP.
    case invalid(HTTPParseError)
    /// No connection within the connect timeout (milliseconds).
    case connectTimeout(Int)
    /// No (complete) response within the response timeout (milliseconds).
    case responseTimeout(Int)
}

/// What a client connection asks of, and reports to, whoever sent the request: a hop to a peer
/// service, or an exchange of the app library's Fetch.
protocol ClientConnectionUser: AnyObject {
    /// The request's head, written into `scratch` (or bytes that stay valid until the request
    /// ends); asked again for every connection attempt.
    func requestHead(into scratch: ByteStore) -> UnsafeRawBufferPointer
    /// The request's body (kept alive by its owner until written).
    var requestBody: OwnedBytes { get }
    /// The response's head arrived; the body follows.
    func responseHead(_ head: HTTPHead)
    /// A piece of the body, valid during the call unless kept through the loop's read block.
    func responseBody(_ bytes: UnsafeRawBufferPointer)
    /// The response is complete; the connection is closed, or back with its owner when `kept`.
    func responseComplete(kept: Bool)
    /// No complete response. `retryable`: a kept-alive connection failed before a byte came
    /// back (the server may have closed it meanwhile), so the request may be sent again.
    func requestFailed(_ failure: ClientFailure, retryable: Bool)
    /// A read was parsed and the response is not complete yet: whatever waits for more
    /// bytes of this read goes out now.
    func readConsumed()
}

extension ClientConnectionUser {
    func readConsumed() {}
}

/// How a client connection behaves.
struct ClientOptions {
    /// A complete response leaves the connection open for another request (when the server
    /// allows it and sent nothing more); otherwise it is closed.
    var keepAlive = false
    /// Close with RST rather than FIN: neither side keeps a TIME_WAIT entry (keep-alive-free
    /// load would exhaust the ports).
    var resetOnClose = false
    /// Milliseconds during which a refused connection is tried again (a restarting service).
    var retryRefused = 0
}

/// The host's one HTTP/1.1 client engine on the loop: connects (trying every address a name
/// resolved to, and again while a refused port may be a service restarting), writes a request,
/// parses the response and hands its parts to its user, enforcing the connect and response
/// timeouts; then closes (with RST when asked) or stays open for the next request. Hops and the
/// app library's exchanges are users of it.
///
/// Its life is `Phase`; `enter(_:)` is the one place the phase changes and sets the deadline
/// that goes with it. Pausing (the user's sink is full) is flow control beside the phase.
final class ClientConnection: TCPHandleDelegate, HTTPParserDelegate, Expiring {
    /// Where the connection is in its life.
    enum Phase {
        /// No request: not used yet, or kept open between requests.
        case idle
        /// Connecting to one of the addresses and writing the request (the connect timeout
        /// applies, from the first attempt on).
        case connecting
        /// A refused (or reset) attempt waits 5 ms before the next, within --connect-retry.
        case retrying
        /// The request went out on an established connection; nothing of the answer yet (the
        /// response timeout applies).
        case awaitingResponse
        /// Bytes of the answer came (the response timeout counts again with each).
        case receiving
        /// Let go: the socket is closed.
        case closed
    }

    // The context outlives every connection.
    private unowned(unsafe) let context: HostContext
    let options: ClientOptions
    /// Whoever sent the request in progress; nil between requests (or once given up).
    private var user: (any ClientConnectionUser)?
    private var handle: TCPHandle?
    private var parser: HTTPParser?
    /// The addresses this connection tries (a name may have several), in order.
    private(set) var addresses: [SocketAddress] = []
    private var candidate = 0
    private var retryTimer: LoopTimer?
    private var started: UInt64 = 0
    private var connectTimeout = 0
    private(set) var responseTimeout = 0
    private(set) var phase = Phase.idle
    /// The request in progress was sent on a connection kept from an earlier one.
    private var reused = false
    /// The answer lets the connection carry another request.
    private var keepAliveAnswer = false
    /// Reading is paused by the user (its own sink is full): no response timeout meanwhile.
    private var paused = false
    /// Inside the parser's feed: letting go waits until it returns.
    private var feeding = false
    private(set) var deadline: UInt64 = 0
    var trackSlot = -1

    init(context: HostContext, options: ClientOptions) {
        self.context = context
        self.options = options
    }

    /// Told when a kept connection closes while it waits for the next request.
    var closedWhileIdle: ((ClientConnection) -> Void)?

    /// The address the connection is made to (or tried last).
    var address: SocketAddress? { candidate < addresses.count ? addresses[candidate] : nil }

    /// Whether the connection is open (a kept one may carry another request).
    var isOpen: Bool { handle != nil }

    /// The request went out on an established connection.
    var connected: Bool {
        switch phase {
        case .awaitingResponse, .receiving: return true
        default: return false
        }
    }

    /// The one place the phase changes. The connect timeout runs from the first attempt (retries
    /// and further addresses included); the response timeout from the moment the request went
    /// out on an established connection, and again from each piece of the answer.
    private func enter(_ next: Phase) {
        switch next {
        case .connecting:
            switch phase {
            case .connecting, .retrying: break   // another address, another attempt: the same bound
            default: deadline = started + UInt64(min(connectTimeout, responseTimeout)) * 1_000_000
            }
        case .retrying, .receiving:
            break
        case .awaitingResponse:
            deadline = EventLoop.nanoseconds() + UInt64(responseTimeout) * 1_000_000
        case .idle, .closed:
            deadline = 0
        }
        phase = next
    }

    // MARK: Sending

    /// Connects to the first of `addresses` that accepts and sends `user`'s request.
    func send(to addresses: [SocketAddress], user: any ClientConnectionUser, connectTimeout: Int, responseTimeout: Int) {
        self.user = user
        self.addresses = addresses
        self.connectTimeout = connectTimeout
        self.responseTimeout = responseTimeout
        candidate = 0
        reused = false
        begin()
        enter(.connecting)
        connect(addresses[0])
    }

    /// Sends `user`'s request on this kept-alive connection.
    func sendAgain(user: any ClientConnectionUser, responseTimeout: Int) {
        guard let handle else { return }
        self.user = user
        self.responseTimeout = responseTimeout
        reused = true
        // A kept connection reads on while idle (to see the server close it); only a paused one
        // starts again.
        if paused { handle.startReading(self) }
        begin()
        enter(.awaitingResponse)
        writeRequest(on: handle)
    }

    private func begin() {
        started = EventLoop.nanoseconds()
        paused = false
        parser?.reset()
        parser?.delegate = self
        context.track(self)
    }

    private func connect(_ address: SocketAddress) {
        let handle: TCPHandle
        do {
            handle = try TCPHandle.connect(loop: context.loop, to: address, delegate: self)
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
        // now; otherwise the write waits for it.
        writeRequest(on: handle)
    }

    private func writeRequest(on handle: TCPHandle) {
        guard let user else { return }
        switch handle.write(user.requestHead(into: context.scratch), user.requestBody) {
        case .done:
            established()
        case .pending:
            // Still connecting, or a body larger than the socket buffer on an established connection.
            if connected || handle.remoteAddress != nil { established() }
        case .failed(let error):
            connectionFailed(error)
        }
    }

    /// The connection is up: from now on the response timeout applies.
    private func established() {
        guard case .connecting = phase else { return }
        enter(.awaitingResponse)
    }

    func handleWriteDone(_ error: LoopError?) {
        // Cancelled: this connection closed the handle itself, after a failure it has handled
        // (a retry may be under way on a new handle).
        if let error, error.isCanceled { return }
        if let error { connectionFailed(error) } else { established() }
    }

    /// The connection failed before a response: refused and never established means the peer
    /// may be restarting (tried again within the window); anything else is a failed send.
    private func connectionFailed(_ error: LoopError) {
        guard user != nil else { return }
        closeHandle(reset: false)
        if connected {
            fail(.send(error))
        } else {
            connectFailed(error)
        }
    }

    private func connectFailed(_ error: LoopError) {
        guard user != nil else { return }
        // A name may have several addresses (localhost: ::1, then 127.0.0.1): try the next one.
        if candidate + 1 < addresses.count {
            candidate += 1
            return connect(addresses[candidate])
        }
        let elapsed = (EventLoop.nanoseconds() - started) / 1_000_000
        // Refused, or reset before the connection was seen up (the request's write not yet
        // confirmed): no host took it. A listener that closes with connections still in its
        // queue resets them, as a host that stops does (a hand-over takes its queue first); a
        // host that had read the request would have answered or been seen up. Either way the
        // peer may be restarting or moving: try again within the window.
        if error.isConnectionRefused || error.isConnectionReset, let first = addresses.first,
           elapsed + 5 < UInt64(options.retryRefused), let timer = try? LoopTimer(loop: context.loop) {
            retryTimer = timer
            enter(.retrying)
            // Every 5 ms: a refused connection costs the peer's node one reset, and a restart or a
            // move is over within milliseconds.
            timer.start(after: 5) { [self] in
                timer.close()
                retryTimer = nil
                guard user != nil else { return }
                candidate = 0
                enter(.connecting)
                connect(first)
            }
            return
        }
        fail(.connect(error))
    }

    // MARK: Receiving

    func handleRead(_ event: ReadEvent) {
        guard let parser, user != nil else {
            // Kept and idle: the server closed (or sent something unasked for); it is done.
            close()
            closedWhileIdle?(self)
            return
        }
        let result: HTTPFeedResult
        var received = 0
        switch event {
        case .data(let bytes):
            // Bytes of an answer: the connection is up, whether or not its write was confirmed.
            established()
            if case .awaitingResponse = phase { enter(.receiving) }
            received = bytes.count
            feeding = true
            result = parser.feed(bytes)
            feeding = false
        case .end:
            feeding = true
            result = parser.finish()
            feeding = false
        case .failed(let error):
            return connected ? fail(.reset(error)) : connectionFailed(error)
        }
        // The user gave up inside the parser's callbacks: let go now that the parser returned.
        if user == nil { return release(reset: true) }
        switch result {
        case .needMore:
            if case .end = event { return fail(.closedEarly) }
            user?.readConsumed()
        case .messageComplete(let consumed):
            // Bytes after the response were never asked for: the connection is not reused, or
            // the next request would read them as its answer.
            let ended: Bool
            if case .end = event { ended = true } else { ended = consumed < received }
            complete(keep: options.keepAlive && keepAliveAnswer && !ended)
        case .failed(let error):
            fail(.invalid(error))
        }
    }

    func parserHead(_ head: HTTPHead) {
        keepAliveAnswer = head.keepAlive
        user?.responseHead(head)
    }

    func parserBody(_ bytes: UnsafeRawBufferPointer) {
        user?.responseBody(bytes)
    }

    private func complete(keep: Bool) {
        guard let user else { return }
        self.user = nil
        if keep {
            retryTimer?.close()
            retryTimer = nil
            context.untrack(self)
            enter(.idle)
            return user.responseComplete(kept: true)
        }
        // The user first: a relayed answer's last bytes wait in the caller's socket for its close
        // (they leave with the FIN), and the caller should not wait while this connection resets.
        user.responseComplete(kept: false)
        release(reset: options.resetOnClose)
    }

    // MARK: Flow control and time

    /// Stops reading until `resume()` (the user's sink is full); no response timeout meanwhile.
    func pause() {
        guard !paused, let handle else { return }
        paused = true
        handle.stopReading()
        deadline = 0
    }

    /// Reads on after `pause()`.
    func resume() {
        guard paused, user != nil, let handle else { return }
        paused = false
        deadline = EventLoop.nanoseconds() + UInt64(responseTimeout) * 1_000_000
        handle.startReading(self)
    }

    /// The response is still coming: its timeout counts again from now.
    func madeProgress() {
        if !paused { deadline = EventLoop.nanoseconds() + UInt64(responseTimeout) * 1_000_000 }
    }

    func expire() {
        guard user != nil else { return }
        // A request still being written when the connect deadline passes may be a large body on
        // an established connection: then the response deadline applies from now on.
        if !connected, let handle, handle.remoteAddress != nil {
            return established()
        }
        fail(connected ? .responseTimeout(responseTimeout) : .connectTimeout(connectTimeout))
    }

    private func fail(_ failure: ClientFailure) {
        guard let user else { return }
        self.user = nil
        // A timeout is never worth sending again: the time is spent.
        var retryable = reused
        if case .receiving = phase { retryable = false }
        if case .responseTimeout = failure { retryable = false }
        release(reset: options.resetOnClose)
        user.requestFailed(failure, retryable: retryable)
    }

    // MARK: Closing

    /// The user gives up on the request (its client went away): the connection closes with RST.
    func abort() {
        guard user != nil else { return }
        user = nil
        // Never return the parser from inside its own callbacks: `handleRead` lets go once it returns.
        if !feeding { release(reset: true) }
    }

    /// Closes the connection (a kept one, or at the host's drain).
    func close() {
        user = nil
        release(reset: false)
    }

    private func closeHandle(reset: Bool) {
        if reset { handle?.setResetOnClose() }
        handle?.close()
        handle = nil
    }

    /// Lets go of the timer, the deadline, the socket and the parser.
    private func release(reset: Bool) {
        retryTimer?.close()
        retryTimer = nil
        context.untrack(self)
        enter(.closed)
        closeHandle(reset: reset)
        if let parser, !feeding {
            context.returnParser(parser)
            self.parser = nil
        }
    }
}
