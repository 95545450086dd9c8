import DyninkaHTTP
import DyninkaLoop

/// A client connection: parses requests one at a time and writes their responses.
///
/// Its life is `Phase`: waiting for a request, receiving one (the request timeout applies),
/// processing it (no timeout here: the hop and function timeouts apply), responding (the write
/// timeout applies while the kernel has not taken the response), and closed; `enter(_:)` is the
/// one place the phase changes and sets the deadline that goes with it. Bytes a pipelining
/// client sends ahead wait in `held`, within a bound, and are parsed in a loop once the response
/// before them is written: never by recursion, never copied again per request. A relayed answer
/// is a `Relay` of its own (InboundConnection+Responding.swift).
final class InboundConnection: HTTPParserDelegate, TCPHandleDelegate, Expiring {
    // The server and its context outlive every connection.
    unowned(unsafe) let server: ServiceHost
    unowned(unsafe) let context: HostContext
    let handle: any ByteStream
    private let parser: HTTPParser
    private(set) var phase = Phase.awaiting(afterAnswer: false)
    /// The relay of the response while it is `.relayed` (kept beside the phase, not in it, so
    /// that asking the phase costs no reference counting on the hop path).
    var relay: Relay?
    var reading = Reading.unwatched
    var request = RequestFacts()
    private var head: HTTPHead?
    /// The request body being collected from several reads (or a chunked body).
    private var body: ByteStore?
    /// The request body when it arrived whole in one read: it stays in that read block.
    private var bodyInBlock: OwnedBytes?
    /// Bytes being parsed come straight from the loop's read block (not from `held`).
    private var parsingReadBlock = false
    /// Bytes received but not parsed yet (sent ahead by a pipelining client), from `heldStart` on.
    var held: ByteStore?
    private var heldStart = 0
    /// The client closed its sending side: answer what is in, then close.
    var peerClosed = false
    /// Inside `pump`: a response completed while parsing continues in the loop, not by recursion.
    private var pumping = false
    /// The response being written lets the connection carry another request.
    var responseKeepAlive = false
    /// This request holds one of the host's in-flight slots until its response is written.
    private var holdsSlot = false
    /// Bytes this connection counts against the host's --max-buffered-bytes now.
    private var charged = 0
    /// Writes the kernel has not finished yet (uv_write requests in flight).
    var queuedWrites = 0
    private(set) var deadline: UInt64 = 0
    var trackSlot = -1
    /// Where answered requests record their spans.
    var tracer: Tracer { context.tracer }

    /// The path `/` stands for on this connection's listener (`--also-listen`); nil: the host's own.
    var root: String?
    /// Accepted on the control listener (`--control-port`): only hand-over requests.
    var control = false

    init(server: ServiceHost, handle: any ByteStream) {
        self.server = server
        context = server.context
        self.handle = handle
        parser = context.takeParser(request: true)
        parser.delegate = self
    }

    /// The one place the phase changes: the request timeout runs from the moment a connection
    /// waits for a request until the request is in; nothing of ours runs while it is processed;
    /// the write timeout is armed by a write the kernel could not take at once.
    func enter(_ next: Phase) {
        switch next {
        case .awaiting:
            deadline = EventLoop.nanoseconds() + UInt64(context.configuration.requestTimeout) * 1_000_000
        case .receiving:
            // Bytes ahead of a kept request count from when that request was answered.
            if case .awaiting = phase {} else {
                deadline = EventLoop.nanoseconds() + UInt64(context.configuration.requestTimeout) * 1_000_000
            }
        case .processing, .closed:
            deadline = 0
        case .responding:
            if queuedWrites == 0 { deadline = 0 }
        }
        phase = next
    }

    /// A write the kernel could not take at once: the write timeout runs from now.
    func armWriteTimeout() {
        deadline = EventLoop.nanoseconds() + UInt64(context.configuration.writeTimeout) * 1_000_000
    }

    /// The kernel took every write: nothing of ours waits.
    func disarmWriteTimeout() { deadline = 0 }

    func start() {
        enter(.awaiting(afterAnswer: false))
        context.track(self)
        // TCP_DEFER_ACCEPT hands over connections whose request is in: it is read at once. A
        // request that came whole and asks to close the connection afterwards (every hop's does)
        // needs nothing more from the socket, so the loop never watches it: no epoll
        // registration and removal per hop. Anything else reads on through the loop.
        handle.readAvailable(into: self)
        if !isClosed && !(busy && !request.keepAlive) { startReading() }
    }

    private func startReading() {
        guard case .unwatched = reading else { return }
        reading = .watching
        handle.startReading(self)
    }

    /// Its request is held for a hand-over's state: watch the socket, so that a client that
    /// leaves meanwhile closes the connection (and gives back its slot) at once.
    func watchWhileHeld() {
        if !isClosed { startReading() }
    }

    func handleRead(_ event: ReadEvent) { read(event) }

    /// Most bytes held from a client ahead of the request being answered; reading pauses beyond
    /// it (TCP then pushes back on the client) and resumes once they are parsed.
    static let maxHeldBytes = 64 * 1024

    private func read(_ event: ReadEvent) {
        if isClosed { return }
        switch event {
        case .data(let bytes):
            if busy || held != nil {
                hold(bytes)
            } else {
                if case .awaiting = phase { enter(.receiving) }
                parse(bytes, inReadBlock: true)
                pump()
            }
        case .end:
            peerClosed = true
            if !busy { pump() }
        case .failed:
            close()
        }
    }

    /// Keeps bytes that arrived ahead of their turn, within the bound.
    private func hold(_ bytes: UnsafeRawBufferPointer) {
        let buffer = held ?? ByteStore(capacity: min(max(bytes.count, 1024), Self.maxHeldBytes))
        if heldStart > 0, heldStart * 2 >= buffer.count {
            charge(-heldStart)
            buffer.removeFirst(heldStart)
            heldStart = 0
        }
        buffer.append(bytes)
        held = buffer
        charge(bytes.count)
        if buffer.count - heldStart >= Self.maxHeldBytes, case .watching = reading {
            handle.stopReading()
            reading = .paused
        }
    }

    /// Parses what is held, request after request, until one is in progress or nothing is left.
    private func pump() {
        guard !pumping else { return }
        pumping = true
        defer { pumping = false }
        while !busy, !isClosed, let buffer = held {
            let pending = buffer.count - heldStart
            if pending == 0 {
                charge(-buffer.count)
                held = nil
                heldStart = 0
                break
            }
            let consumed = parse(UnsafeRawBufferPointer(rebasing: buffer.bytes[heldStart...]))
            heldStart += consumed
        }
        if !busy, !isClosed, case .paused = reading {
            reading = .unwatched
            startReading()
        }
        if !busy, !isClosed, peerClosed, held == nil {
            // The client is done sending: a request that ends with the connection is answered,
            // anything else (nothing, or half a request) closes.
            if case .messageComplete = parser.finish() { dispatch() } else { close() }
        }
    }

    /// Feeds bytes to the parser; dispatches a complete request. Bytes after a complete request
    /// are kept for later when they are not already in `held`. Returns the bytes consumed.
    @discardableResult
    private func parse(_ bytes: UnsafeRawBufferPointer, inReadBlock: Bool = false) -> Int {
        // A function may answer at once, and the next request be parsed from `held` inside
        // this call: the flag holds for this call's bytes only.
        let outer = parsingReadBlock
        parsingReadBlock = inReadBlock
        let result = parser.feed(bytes)
        parsingReadBlock = outer
        if let declared = refusedBody {
            // Refused from inside the parser's callback; answered now that the parser returned.
            refusedBody = nil
            overloaded(declared: declared)
            return bytes.count
        }
        switch result {
        case .needMore:
            return bytes.count
        case .messageComplete(let consumed):
            if consumed < bytes.count, held == nil {
                hold(UnsafeRawBufferPointer(rebasing: bytes[consumed...]))
            }
            dispatch()
            return held == nil ? bytes.count : consumed
        case .failed(let error):
            // The request was not understood: nothing of it (HEAD, keep-alive) applies.
            abandonRequest()
            let failure = ServiceFailure(service: context.configuration.service, kind: .badInput,
                                         message: "\(error)", status: error.status)
            respond(failure: failure, forceClose: true)
            return bytes.count
        }
    }

    private func dispatch() {
        enter(.processing)
        let head = self.head!
        let body = bodyInBlock ?? self.body?.owned
        request.keepAlive = head.keepAlive
        request.isHead = head.method == "HEAD"
        if context.configuration.accessLog {
            request.line = "\(head.method) \(head.target)"
            request.started = EventLoop.nanoseconds()
        }
        self.head = nil
        self.body = nil
        bodyInBlock = nil
        server.dispatch(head, body: body, on: self)
    }

    /// Drops what was parsed of a request that will not be processed: it is answered by the
    /// host itself (and the connection closed), so nothing it asked for applies.
    private func abandonRequest() {
        enter(.processing)
        head = nil
        body = nil
        bodyInBlock = nil
        request = RequestFacts()
    }

    func parserHead(_ head: HTTPHead) {
        self.head = head
        declaredLength = 0
        if let length = head.contentLength, length > 0 {
            // The whole declared body counts from now on, before a byte of it arrives.
            guard reserve(length) else { return refuse(length) }
            declaredLength = length
        }
    }

    /// The Content-Length of the request being parsed, counted against --max-buffered-bytes in
    /// full; 0 for none (no body, or a chunked one counted as it grows).
    private var declaredLength = 0
    private var declaredBody: Bool { declaredLength > 0 }

    func parserBody(_ bytes: UnsafeRawBufferPointer) {
        guard refusedBody == nil else { return }
        if !declaredBody {
            // A chunked body counts as it grows.
            guard reserve(bytes.count) else { return refuse(-1) }
        }
        if body == nil {
            if declaredBody, bytes.count == declaredLength, parsingReadBlock {
                // The whole body in one read: the function gets it where it arrived, no copy.
                bodyInBlock = context.loop.readBlock.own(bytes)
                return
            }
            body = ByteStore(capacity: declaredBody ? declaredLength : max(bytes.count, 1024))
        }
        body!.append(bytes)
    }

    /// The body of the request being parsed does not fit (-1: a chunked body); set inside the
    /// parser's callbacks and answered by `parse` once the parser returns.
    private var refusedBody: Int?

    private func refuse(_ declared: Int) {
        if refusedBody == nil { refusedBody = declared }
    }

    /// Too many bytes buffered host-wide: 503 with Retry-After, and the connection closes (the
    /// rest of the body is not read).
    private func overloaded(declared: Int) {
        abandonRequest()
        let size = declared >= 0 ? "a \(declared)-byte body" : "this body"
        // A refusal of the service like any other: it names the service in Server-Timing too.
        send(ServiceFailure(service: context.configuration.service, kind: .overloaded, message: context.overloadMessage(size)),
             timing: HopTiming(name: context.configuration.service, started: EventLoop.nanoseconds(), trace: nil), forceClose: true)
    }

    func expire() {
        switch phase {
        case .closed, .processing:
            return
        case .responding:
            guard writing else { return }
            context.metrics.writeTimeouts += 1
            context.log.warning("closing a client connection: its client read no response for \(context.configuration.writeTimeout) ms (--write-timeout)")
            handle.setResetOnClose()
            close()
        case .awaiting:
            close()
        case .receiving:
            abandonRequest()
            respond(failure: ServiceFailure(service: context.configuration.service, kind: .badInput,
                                            message: "request not received within \(context.configuration.requestTimeout) ms",
                                            status: 408), forceClose: true)
        }
    }

    /// A request that has not fully come is refused with `failure` (a hand-over that cannot wait
    /// longer); a connection with nothing received just closes.
    func refuseUnfinished(_ failure: ServiceFailure) {
        switch phase {
        case .awaiting: close()
        case .receiving:
            abandonRequest()
            respond(failure: failure, forceClose: true)
        default: return
        }
    }

    // MARK: In-flight slots and buffered bytes

    /// Takes one of the host's in-flight slots for the request being answered; it is given back
    /// once the response is written (or the connection is gone), not when the answer is known.
    func claimSlot() {
        guard !holdsSlot else { return }
        holdsSlot = true
        context.metrics.inFlight += 1
    }

    func releaseSlot() {
        guard holdsSlot else { return }
        holdsSlot = false
        context.metrics.inFlight -= 1
        server.requestFinished()
    }

    func charge(_ bytes: Int) {
        charged += bytes
        context.bufferedBytes += bytes
    }

    /// Counts `bytes` if they fit within --max-buffered-bytes.
    private func reserve(_ bytes: Int) -> Bool {
        guard context.reserveBuffer(bytes) else { return false }
        charged += bytes
        return true
    }

    /// Gives back everything counted but the bytes still held (the request body, a written response).
    func releaseAllButHeld() {
        let kept = held?.count ?? 0
        context.bufferedBytes -= charged - kept
        charged = kept
    }

    /// Gets ready for the next request on a keep-alive connection.
    func next() {
        guard !isClosed else { return }
        enter(held != nil ? .receiving : .awaiting(afterAnswer: true))
        parser.resume()
        pump()
    }

    func close() {
        guard !isClosed else { return }
        enter(.closed)
        context.untrack(self)
        if let relay {
            self.relay = nil
            relay.abort()
            context.returnRelay(relay)
        }
        handle.close(nil)
        held = nil
        releaseAllButHeld()
        context.returnParser(parser)
        releaseSlot()
        server.connectionClosed(self)
    }
}
