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
    private var idle: [String: [ClientConnection]] = [:]
    /// Idle connections kept per origin at most.
    static let maxIdle = 64

    init(context: HostContext) { self.context = context }

    /// Starts an exchange; `done` is called exactly once, on the loop.
    func start(host name: String, port: Int, request: UnsafeRawBufferPointer, timeout: Int, done: ExchangeDone) {
        let key = "\(name):\(port)"
        let entry = context.names.entry(name, port: port)
        let exchange = ExchangeRequest(key: key, request: request, timeout: timeout, done: done, name: entry)
        if let connection = idle[key]?.popLast() {
            return Exchange(client: self, exchange: exchange, connection: connection).sendAgain()
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
        let connection = ClientConnection(context: context, options: ClientOptions(keepAlive: true))
        connection.closedWhileIdle = { [unowned self] connection in forget(connection, key: exchange.key) }
        Exchange(client: self, exchange: exchange, connection: connection).send(to: [address])
    }

    /// A new connection to `name` failed: resolve it again next time.
    func connectFailed(_ name: NameCache.Entry) {
        context.names.invalidate(name)
    }

    /// A connection whose response is complete and which may carry another exchange.
    func keep(_ connection: ClientConnection, key: String) {
        guard !context.draining, (idle[key]?.count ?? 0) < Self.maxIdle else { return connection.close() }
        idle[key, default: []].append(connection)
    }

    /// An idle connection the server closed.
    private func forget(_ connection: ClientConnection, key: String) {
        idle[key]?.removeAll { $0 === connection }
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

/// One exchange on a client connection (new, or kept alive from an earlier exchange with the
/// same origin); the response is collected whole for the library.
final class Exchange: ClientConnectionUser {
    private unowned(unsafe) let client: ExchangeClient
    private var exchange: ExchangeRequest
    private let connection: ClientConnection
    private var status = 0
    private let body = ByteStore(capacity: 4096)

    init(client: ExchangeClient, exchange: ExchangeRequest, connection: ClientConnection) {
        self.client = client
        self.exchange = exchange
        self.connection = connection
    }

    func send(to addresses: [SocketAddress]) {
        connection.send(to: addresses, user: self, connectTimeout: exchange.timeout, responseTimeout: exchange.timeout)
    }

    func sendAgain() {
        connection.sendAgain(user: self, responseTimeout: exchange.timeout)
    }

    /// The request is borrowed from the library (valid until `done`); what the kernel does not
    /// take at once is copied.
    func requestHead(into scratch: ByteStore) -> UnsafeRawBufferPointer { exchange.request }
    var requestBody: OwnedBytes { .empty }

    func responseHead(_ head: HTTPHead) {
        status = head.status
        body.removeAll()
        if let length = head.contentLength { body.reserve(length) }
    }

    func responseBody(_ bytes: UnsafeRawBufferPointer) { body.append(bytes) }

    func responseComplete(kept: Bool) {
        // Back to the pool first: `done` may start the next exchange to the same origin.
        if kept { client.keep(connection, key: exchange.key) }
        client.finish(exchange, status: Int32(status), body: body.bytes)
    }

    func requestFailed(_ failure: ClientFailure, retryable: Bool) {
        // A kept-alive connection that failed before any answer may have been closed by the
        // server meanwhile: send once more on a new connection.
        if retryable, !exchange.retried, let address = connection.address {
            exchange.retried = true
            return client.open(address, exchange)
        }
        let reason: String
        switch failure {
        case .connect(let error):
            client.connectFailed(exchange.name)
            reason = "cannot connect (\(error.reason)); is the endpoint up?"
        case .send(let error): reason = "sending failed (\(error.reason))"
        case .reset(let error): reason = "the connection failed (\(error.reason))"
        case .closedEarly: reason = "the server closed the connection before answering"
        case .invalid(let error): reason = "invalid response (\(error))"
        case .connectTimeout(let milliseconds), .responseTimeout(let milliseconds): reason = "no answer within \(milliseconds) ms"
        }
        client.finish(exchange, failure: reason)
    }
}
