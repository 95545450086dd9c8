import DyninkaHTTP
import DyninkaLoop

/// A client connection: parses requests one at a time and writes their responses.
final class InboundConnection: HTTPParserDelegate, Expiring {
    private unowned let host: ServiceHost
    private let handle: TCPHandle
    private let parser: HTTPParser
    private var head: HTTPHead?
    private var body: ByteBuffer?
    /// Bytes that arrived after a complete request (a pipelining client); parsed after answering.
    private var leftover: ByteBuffer?
    private var receivedAny = false
    /// The current request allows another one on this connection.
    private var requestKeepAlive = false
    private(set) var busy = false
    private var closed = false
    private(set) var deadline: UInt64 = 0

    init(host: ServiceHost, handle: TCPHandle) {
        self.host = host
        self.handle = handle
        parser = HTTPParser(kind: .request, maxHeaderBytes: host.configuration.maxHeaderBytes,
                            maxBodyBytes: host.configuration.maxBodyBytes)
        parser.delegate = self
    }

    func start() {
        armRequestTimeout()
        host.track(self)
        handle.startReading { [self] event in read(event) }
    }

    /// Whether the connection waits for a request with nothing received (safe to close when draining).
    var idle: Bool { !busy && !receivedAny }

    private func armRequestTimeout() {
        deadline = EventLoop.nanoseconds() + UInt64(host.configuration.requestTimeout) * 1_000_000
    }

    private func read(_ event: ReadEvent) {
        guard !closed, !busy else { return }
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
            handle.stopReading()
            let failure = ServiceFailure(service: host.configuration.service, kind: .badInput,
                                         message: "\(error)", status: error.status)
            host.metrics.recordFailure(service: host.configuration.service, kind: .badInput)
            respond(failure: failure, serverTiming: nil, forceClose: true)
        }
    }

    private func dispatch() {
        busy = true
        deadline = 0
        handle.stopReading()
        let head = self.head!
        let body = self.body
        requestKeepAlive = head.keepAlive
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
        handle.stopReading()
        host.metrics.recordFailure(service: host.configuration.service, kind: .badInput)
        respond(failure: ServiceFailure(service: host.configuration.service, kind: .badInput,
                                        message: "request not received within \(host.configuration.requestTimeout) ms",
                                        status: 408), serverTiming: nil, forceClose: true)
    }

    // MARK: Responding

    /// Writes a response whose body bytes are kept alive by `owners` until written.
    func respond(status: Int, fields: [(String, String)], body: UnsafeRawBufferPointer, owners: [AnyObject],
                 forceClose: Bool = false) {
        guard !closed else { return }
        let keepAlive = requestKeepAlive && !forceClose && !host.draining
        let head = HTTPWriter.responseHead(status: status, fields: fields, contentLength: body.count, keepAlive: keepAlive)
        handle.write([head.bytes, body], owners: [head] + owners) { [self] error in
            if error != nil || !keepAlive { close() } else { next() }
        }
    }

    /// Writes a failure as the wire protocol's JSON error body.
    func respond(failure: ServiceFailure, serverTiming: String?, forceClose: Bool = false) {
        let body = failure.body
        var fields: [(String, String)] = [("Content-Type", "application/json")]
        if let serverTiming { fields.append(("Server-Timing", serverTiming)) }
        if failure.kind == .overloaded { fields.append(("Retry-After", "1")) }
        respond(status: failure.status, fields: fields, body: body.bytes, owners: [body], forceClose: forceClose)
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
        if !busy && !closed { handle.startReading { [self] event in read(event) } }
    }

    func close() {
        guard !closed else { return }
        closed = true
        deadline = 0
        host.untrack(self)
        handle.close()
        host.connectionClosed(self)
    }
}
