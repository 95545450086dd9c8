import DyninkaHTTP
import DyninkaLoop

/// A client connection: parses requests one at a time and writes their responses.
final class InboundConnection: HTTPParserDelegate, TCPHandleDelegate, Expiring {
    // The host outlives every request and connection it serves.
    private unowned(unsafe) let host: ServiceHost
    private let handle: TCPHandle
    private let parser: HTTPParser
    private var head: HTTPHead?
    private var body: ByteBuffer?
    /// Bytes that arrived after a complete request (a pipelining client); parsed after answering.
    private var leftover: ByteBuffer?
    private var receivedAny = false
    /// The current request allows another one on this connection.
    private var requestKeepAlive = false
    /// "METHOD target" and start time of the request being answered, for the access log.
    private var requestLine = ""
    private var requestStarted: UInt64 = 0
    private(set) var busy = false
    private var readingStopped = false
    /// The client closed its sending side while a request ran: answer, then close.
    private var peerClosed = false
    private var closed = false
    /// The response being written lets the connection carry another request.
    private var responseKeepAlive = false
    private(set) var deadline: UInt64 = 0
    var trackSlot = -1

    init(host: ServiceHost, handle: TCPHandle) {
        self.host = host
        self.handle = handle
        parser = host.takeParser(request: true)
        parser.delegate = self
    }

    func start() {
        armRequestTimeout()
        host.track(self)
        handle.startReading(self)
        handle.readAvailable()
    }

    func handleRead(_ event: ReadEvent) { read(event) }

    /// Whether the connection waits for a request with nothing received (safe to close when draining).
    var idle: Bool { !busy && !receivedAny }

    private func armRequestTimeout() {
        deadline = EventLoop.nanoseconds() + UInt64(host.configuration.requestTimeout) * 1_000_000
    }

    /// Most bytes held from a client while its request is being answered before reading pauses.
    private static let maxHeldBytes = 64 * 1024

    private func read(_ event: ReadEvent) {
        guard !closed else { return }
        if busy {
            // Reading stays on while a request runs (stopping and restarting costs two epoll_ctl
            // calls per request); what arrives meanwhile waits in `leftover`, within a bound.
            if case .end = event { peerClosed = true }
            if case .data(let bytes) = event {
                let held = leftover ?? ByteBuffer(capacity: bytes.count)
                held.append(bytes)
                leftover = held
                if held.count > Self.maxHeldBytes { handle.stopReading(); readingStopped = true }
            }
            return
        }
        switch event {
        case .data(let bytes):
            receivedAny = true
            process(bytes)
        case .end:
            switch parser.finish() {
            case .messageComplete: dispatch()
            default: close()
            }
        case .failed:
            close()
        }
    }

    private func process(_ bytes: UnsafeRawBufferPointer) {
        switch parser.feed(bytes) {
        case .needMore:
            break
        case .messageComplete(let consumed):
            if consumed < bytes.count {
                let rest = ByteBuffer(capacity: bytes.count - consumed)
                rest.append(UnsafeRawBufferPointer(rebasing: bytes[consumed...]))
                leftover = rest
            }
            dispatch()
        case .failed(let error):
            busy = true
            deadline = 0
            let failure = ServiceFailure(service: host.configuration.service, kind: .badInput,
                                         message: "\(error)", status: error.status)
            host.metrics.recordFailure(service: host.configuration.service, kind: .badInput)
            respond(failure: failure, forceClose: true)
        }
    }

    private func dispatch() {
        busy = true
        deadline = 0
        let head = self.head!
        let body = self.body
        requestKeepAlive = head.keepAlive
        if host.configuration.accessLog {
            requestLine = "\(head.method) \(head.target)"
            requestStarted = EventLoop.nanoseconds()
        }
        self.head = nil
        self.body = nil
        host.dispatch(head, body: body, on: self)
    }

    func parserHead(_ head: HTTPHead) {
        self.head = head
        if let length = head.contentLength, length > 0 { body = ByteBuffer(capacity: length) }
    }

    func parserBody(_ bytes: UnsafeRawBufferPointer) {
        if body == nil { body = ByteBuffer(capacity: max(bytes.count, 1024)) }
        body!.append(bytes)
    }

    func expire() {
        guard !busy, !closed else { return }
        if !receivedAny {
            close()
            return
        }
        busy = true
        deadline = 0
        host.metrics.recordFailure(service: host.configuration.service, kind: .badInput)
        respond(failure: ServiceFailure(service: host.configuration.service, kind: .badInput,
                                        message: "request not received within \(host.configuration.requestTimeout) ms",
                                        status: 408), forceClose: true)
    }

    // MARK: Responding

    /// Writes a response; `fields` appends header lines, `owner` keeps the body alive until written.
    func respond(status: Int, body: UnsafeRawBufferPointer, owner: AnyObject?, forceClose: Bool = false,
                 fields: (ByteBuffer) -> Void) {
        guard !closed else { return }
        let keepAlive = requestKeepAlive && !forceClose && !host.draining && !peerClosed
        if host.configuration.accessLog {
            let micros = requestStarted == 0 ? 0 : (EventLoop.nanoseconds() - requestStarted) / 1000
            let peer = handle.remoteAddress?.description ?? "-"
            host.log.info("\(peer) \"\(requestLine.isEmpty ? "-" : requestLine)\" \(status) \(body.count) \(micros)us")
            requestLine = ""
            requestStarted = 0
        }
        // The head goes out of the host's scratch buffer; the write copies what it cannot send at once.
        let head = HTTPWriter.responseHead(status: status, contentLength: body.count, keepAlive: keepAlive,
                                           into: host.scratch, fields: fields)
        responseKeepAlive = keepAlive
        switch handle.write(head.bytes, body, owners: (nil, owner)) {
        case .done: handleWriteDone(nil)
        case .pending: break
        case .failed(let error): handleWriteDone(error)
        }
    }

    func handleWriteDone(_ error: LoopError?) {
        if error != nil || !responseKeepAlive { close() } else { next() }
    }

    /// Writes a failure as the wire protocol's JSON error body.
    func respond(failure: ServiceFailure, forceClose: Bool = false) {
        let body = failure.body
        respond(status: failure.status, body: body.bytes, owner: body, forceClose: forceClose) { head in
            head.append("Content-Type: application/json\r\n")
            if failure.kind == .overloaded { head.append("Retry-After: 1\r\n") }
        }
    }

    /// Gets ready for the next request on a keep-alive connection.
    private func next() {
        guard !closed else { return }
        busy = false
        receivedAny = false
        parser.resume()
        armRequestTimeout()
        if let pending = leftover {
            leftover = nil
            receivedAny = true
            process(pending.bytes)
        }
        if !busy && !closed && readingStopped {
            readingStopped = false
            handle.startReading(self)
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        deadline = 0
        host.untrack(self)
        handle.close()
        host.returnParser(parser)
        host.connectionClosed(self)
    }
}
