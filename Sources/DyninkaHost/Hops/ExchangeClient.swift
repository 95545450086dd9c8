import DyninkaHTTP
import DyninkaLoop

/// One HTTP exchange the app library asked for (ABI 2 `exchange`).
struct ExchangeRequest {
    let key: String
    let request: UnsafeRawBufferPointer
    let timeout: Int
    let done: ExchangeDone
    /// The origin's name in the host's name cache (looked up again after a failed connect).
    let name: NameCache.Entry
    /// Sent again once already (on a new connection, after a kept-alive one failed).
    var retried = false
}

/// The HTTP client the host lends the app library: exchanges on the loop, never blocking it,
/// with keep-alive connections pooled per origin (host:port). Async services use it through
/// `Fetch`; their task waits on the loop while the loop serves other requests.
final class ExchangeClient {
    // The context outlives every exchange.
    unowned(unsafe) let context: HostContext
    /// Idle kept-alive connections by origin. Origins resolve through the host's name cache, as
    /// peers do: a failed connection looks the name up again (a pod or a DNS record that moved).
    private var idle: [String: [ExchangeConnection]] = [:]
    /// Idle connections kept per origin at most.
    static let maxIdle = 64

    init(context: HostContext) { self.context = context }

    /// Starts an exchange; `done` is called exactly once, on the loop.
    func start(host name: String, port: Int, request: UnsafeRawBufferPointer, timeout: Int, done: ExchangeDone) {
        let key = "\(name):\(port)"
        let entry = context.names.entry(name, port: port)
        let exchange = ExchangeRequest(key: key, request: request, timeout: timeout, done: done, name: entry)
        if let connection = idle[key]?.popLast() {
            return connection.send(exchange, reused: true)
        }
        if let known = context.names.fresh(entry) {
            return open(known[0], exchange)
        }
        // The exchange's timeout covers the name lookup too (a DNS server may not answer).
        let lookup = PendingLookup(deadline: EventLoop.nanoseconds() + UInt64(timeout) * 1_000_000)
        lookup.onTimeout = { [self, unowned lookup] in
            context.untrack(lookup)
            finish(exchange, failure: "cannot resolve '\(name)' within \(timeout) ms")
        }
        context.track(lookup)
        context.names.addresses(of: entry) { [self] result in
            guard lookup.end() else { return }
            context.untrack(lookup)
            switch result {
            case .success(let addresses):
                open(addresses[0], exchange)
            case .failure(let error):
                finish(exchange, failure: "cannot resolve '\(name)' (\(error.reason))")
            }
        }
    }

    /// Sends on a new connection.
    func open(_ address: SocketAddress, _ exchange: ExchangeRequest) {
        let connection = ExchangeConnection(client: self, key: exchange.key, address: address)
        do {
            try connection.connect(loop: context.loop)
        } catch {
            context.names.invalidate(exchange.name)
            return finish(exchange, failure: "cannot connect (\(error.reason)); is the endpoint up?")
        }
        connection.send(exchange, reused: false)
    }

    /// A new connection to `name` failed: resolve it again next time.
    func connectFailed(_ name: NameCache.Entry) {
        context.names.invalidate(name)
    }

    /// A connection whose response is complete and which may carry another exchange.
    func keep(_ connection: ExchangeConnection) {
        guard !context.draining, (idle[connection.key]?.count ?? 0) < Self.maxIdle else { return connection.close() }
        idle[connection.key, default: []].append(connection)
    }

    /// An idle connection the server closed.
    func forget(_ connection: ExchangeConnection) {
        idle[connection.key]?.removeAll { $0 === connection }
    }

    /// Closes every idle connection (when the host drains).
    func closeIdle() {
        let all = idle.values.joined()
        idle = [:]
        for connection in all { connection.close() }
    }

    func finish(_ exchange: ExchangeRequest, status: Int32, body: UnsafeRawBufferPointer) {
        exchange.done(status: status, body: body)
    }

    func finish(_ exchange: ExchangeRequest, failure message: String) {
        context.log.warning("fetch from \(exchange.key) failed: \(message)")
        var message = message
        message.withUTF8 { finish(exchange, status: -1, body: UnsafeRawBufferPointer($0)) }
    }
}

/// A name lookup for an exchange, ended by its answer or by the exchange's deadline, whichever
/// comes first.
final class PendingLookup: Expiring {
    private(set) var deadline: UInt64
    var trackSlot = -1
    /// Called once if the deadline passes first.
    var onTimeout: (() -> Void)?

    init(deadline: UInt64) { self.deadline = deadline }

    /// Ends the lookup; false when it had already ended (timed out).
    func end() -> Bool {
        guard onTimeout != nil else { return false }
        onTimeout = nil
        deadline = 0
        return true
    }

    func expire() {
        guard let onTimeout else { return }
        self.onTimeout = nil
        deadline = 0
        onTimeout()
    }
}

/// A connection to one origin, carrying one exchange at a time and kept alive between them.
final class ExchangeConnection: TCPHandleDelegate, HTTPParserDelegate, Expiring {
    private unowned(unsafe) let client: ExchangeClient
    let key: String
    private let address: SocketAddress
    private var handle: TCPHandle?
    private let parser: HTTPParser
    private var exchange: ExchangeRequest?
    private var reused = false
    /// The connection was established (a request went out on it).
    private var connected = false
    private var receivedBytes = false
    private var status = 0
    private var keepAlive = false
    private let body = ByteStore(capacity: 4096)
    private(set) var deadline: UInt64 = 0
    var trackSlot = -1

    init(client: ExchangeClient, key: String, address: SocketAddress) {
        self.client = client
        self.key = key
        self.address = address
        parser = HTTPParser(kind: .response, maxHeaderBytes: 64 * 1024, maxBodyBytes: client.context.configuration.maxBodyBytes)
    }

    func connect(loop: EventLoop) throws(LoopError) {
        handle = try TCPHandle.connect(loop: loop, to: address, delegate: self)
    }

    func send(_ exchange: ExchangeRequest, reused: Bool) {
        guard let handle else { return client.open(address, exchange) }
        self.exchange = exchange
        self.reused = reused
        receivedBytes = false
        body.removeAll()
        parser.reset()
        parser.delegate = self
        deadline = EventLoop.nanoseconds() + UInt64(exchange.timeout) * 1_000_000
        client.context.track(self)
        // The request is borrowed: what the kernel does not take at once is copied.
        switch handle.write(exchange.request) {
        case .done: connected = true
        case .pending: break
        case .failed(let error): writeFailed(error)
        }
    }

    func handleWriteDone(_ error: LoopError?) {
        if let error { writeFailed(error) } else { connected = true }
    }

    private func writeFailed(_ error: LoopError) {
        if connected { return failed("sending failed (\(error.reason))") }
        if let exchange { client.connectFailed(exchange.name) }
        failed("cannot connect (\(error.reason)); is the endpoint up?")
    }

    func handleRead(_ event: ReadEvent) {
        guard exchange != nil else {
            // Idle: the server closed (or sent something unasked for); this connection is done.
            client.forget(self)
            return close()
        }
        let result: HTTPFeedResult
        var received = 0
        switch event {
        case .data(let bytes):
            receivedBytes = true
            received = bytes.count
            result = parser.feed(bytes)
        case .end:
            result = parser.finish()
        case .failed(let error):
            return connected ? failed("the connection failed (\(error.reason))") : writeFailed(error)
        }
        switch result {
        case .needMore:
            if case .end = event { failed("the server closed the connection before answering") }
        case .messageComplete(let consumed):
            // Bytes after the response were never asked for (a misbehaving endpoint): the
            // connection is not reused, or the next fetch would read them as its answer.
            let ended: Bool
            if case .end = event { ended = true } else { ended = consumed < received }
            complete(endsConnection: ended)
        case .failed(let error):
            failed("invalid response (\(error))")
        }
    }

    func parserHead(_ head: HTTPHead) {
        status = head.status
        keepAlive = head.keepAlive
        if let length = head.contentLength { body.reserve(length) }
    }

    func parserBody(_ bytes: UnsafeRawBufferPointer) { body.append(bytes) }

    func expire() {
        guard let exchange else { return }
        failed("no answer within \(exchange.timeout) ms", retry: false)
    }

    private func complete(endsConnection: Bool) {
        guard let exchange else { return }
        self.exchange = nil
        client.context.untrack(self)
        // Back to the pool first: `done` may start the next exchange to the same origin.
        if keepAlive && !endsConnection { client.keep(self) } else { close() }
        client.finish(exchange, status: Int32(status), body: body.bytes)
    }

    /// Ends the exchange in progress with an error, or sends it again on a new connection when
    /// this kept-alive one failed before any answer (the server may have closed it meanwhile).
    private func failed(_ reason: String, retry: Bool = true) {
        guard var exchange else { return }
        self.exchange = nil
        client.context.untrack(self)
        close()
        if retry && reused && !receivedBytes && !exchange.retried {
            exchange.retried = true
            return client.open(address, exchange)
        }
        client.finish(exchange, failure: reason)
    }

    func close() {
        handle?.close()
        handle = nil
    }
}
