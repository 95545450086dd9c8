import DyninkaHTTP
import DyninkaLoop

/// A client connection: parses requests one at a time and writes their responses.
///
/// Its life is a loop of three states: reading a request (the request timeout applies), busy with
/// it (no timeout here: the hop and function timeouts apply), and writing the response (the write
/// timeout applies). Bytes a pipelining client sends ahead wait in `held`, within a bound, and are
/// parsed in a loop once the response before them is written: never by recursion, never copied
/// again per request.
final class InboundConnection: HTTPParserDelegate, TCPHandleDelegate, Expiring {
    // The server and its context outlive every connection.
    private unowned(unsafe) let server: ServiceHost
    private unowned(unsafe) let context: HostContext
    private let handle: any ByteStream
    private let parser: HTTPParser
    private var head: HTTPHead?
    /// The request body being collected from several reads (or a chunked body).
    private var body: ByteStore?
    /// The request body when it arrived whole in one read: it stays in that read block.
    private var bodyInBlock: OwnedBytes?
    /// Bytes being parsed come straight from the loop's read block (not from `held`).
    private var parsingReadBlock = false
    /// Bytes received but not parsed yet (sent ahead by a pipelining client), from `heldStart` on.
    private var held: ByteStore?
    private var heldStart = 0
    private var receivedAny = false
    /// The current request allows another one on this connection.
    private var requestKeepAlive = false
    /// The current request is HEAD: its response has the head of a GET and no body.
    private var requestIsHead = false
    /// "METHOD target" and start time of the request being answered, for the access log.
    private var requestLine = ""
    private var requestStarted: UInt64 = 0
    private(set) var busy = false
    /// A response is being written and the kernel has not taken all of it yet.
    private var writing = false
    private var readingStopped = false
    /// The client closed its sending side: answer what is in, then close.
    private var peerClosed = false
    private var closed = false
    /// Inside `pump`: a response completed while parsing continues in the loop, not by recursion.
    private var pumping = false
    /// The response being written lets the connection carry another request.
    private var responseKeepAlive = false
    /// This request holds one of the host's in-flight slots until its response is written.
    private var holdsSlot = false
    /// Bytes this connection counts against the host's --max-buffered-bytes now.
    private var charged = 0
    private(set) var deadline: UInt64 = 0
    var trackSlot = -1
    /// Where answered requests record their spans.
    var tracer: Tracer { context.tracer }

    init(server: ServiceHost, handle: any ByteStream) {
        self.server = server
        context = server.context
        self.handle = handle
        parser = context.takeParser(request: true)
        parser.delegate = self
    }

    func start() {
        armRequestTimeout()
        context.track(self)
        // TCP_DEFER_ACCEPT hands over connections whose request is in: it is read at once. A
        // request that came whole and asks to close the connection afterwards (every hop's does)
        // needs nothing more from the socket, so the loop never watches it: no epoll
        // registration and removal per hop. Anything else reads on through the loop.
        handle.readAvailable(into: self)
        if !closed && !(busy && !requestKeepAlive) { startReading() }
    }

    /// The loop watches the socket (reads, and learns of a reset or a close).
    private var watching = false

    private func startReading() {
        guard !watching else { return }
        watching = true
        handle.startReading(self)
    }

    /// Its request is held for a hand-over's state: watch the socket, so that a client that
    /// leaves meanwhile closes the connection (and gives back its slot) at once.
    func watchWhileHeld() {
        if !closed { startReading() }
    }

    func handleRead(_ event: ReadEvent) { read(event) }

    /// Whether the connection waits for a request with nothing received (safe to close when draining).
    var idle: Bool { !busy && !receivedAny }
    /// Whether its request has not fully come yet (or, accepted with nothing received, is about
    /// to): not a kept connection between requests, not busy with a request, not closed.
    var partial: Bool { !busy && !closed && !betweenRequests }
    var isClosed: Bool { closed }
    /// Whether it answered a request and waits for another with nothing of it received (a kept
    /// connection that may be closed at any time; its client knows to try again).
    var betweenRequests: Bool { idle && answered }
    private var answered = false

    private func armRequestTimeout() {
        deadline = EventLoop.nanoseconds() + UInt64(context.configuration.requestTimeout) * 1_000_000
    }

    /// Most bytes held from a client ahead of the request being answered; reading pauses beyond
    /// it (TCP then pushes back on the client) and resumes once they are parsed.
    static let maxHeldBytes = 64 * 1024

    private func read(_ event: ReadEvent) {
        guard !closed else { return }
        switch event {
        case .data(let bytes):
            receivedAny = true
            if busy || held != nil {
                hold(bytes)
            } else {
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
        if buffer.count - heldStart >= Self.maxHeldBytes, !readingStopped {
            handle.stopReading()
            watching = false
            readingStopped = true
        }
    }

    /// Parses what is held, request after request, until one is in progress or nothing is left.
    private func pump() {
        guard !pumping else { return }
        pumping = true
        defer { pumping = false }
        while !busy, !closed, let buffer = held {
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
        if !busy, !closed, readingStopped {
            readingStopped = false
            startReading()
        }
        if !busy, !closed, peerClosed, held == nil {
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
            busy = true
            deadline = 0
            // The request was not understood: nothing of it (HEAD, keep-alive) applies.
            requestIsHead = false
            requestKeepAlive = false
            let failure = ServiceFailure(service: context.configuration.service, kind: .badInput,
                                         message: "\(error)", status: error.status)
            context.metrics.recordFailure(service: context.configuration.service, kind: .badInput)
            respond(failure: failure, forceClose: true)
            return bytes.count
        }
    }

    private func dispatch() {
        busy = true
        deadline = 0
        let head = self.head!
        let body = bodyInBlock ?? self.body?.owned
        requestKeepAlive = head.keepAlive
        requestIsHead = head.method == "HEAD"
        if context.configuration.accessLog {
            requestLine = "\(head.method) \(head.target)"
            requestStarted = EventLoop.nanoseconds()
        }
        self.head = nil
        self.body = nil
        bodyInBlock = nil
        server.dispatch(head, body: body, on: self)
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
        busy = true
        deadline = 0
        head = nil
        body = nil
        bodyInBlock = nil
        requestKeepAlive = false
        requestIsHead = false
        context.metrics.recordFailure(service: context.configuration.service, kind: .overloaded)
        context.metrics.record(service: context.configuration.service, status: 503, seconds: 0)
        let size = declared >= 0 ? "a \(declared)-byte body" : "this body"
        // A refusal of the service like any other: it names the service in Server-Timing too.
        send(ServiceFailure(service: context.configuration.service, kind: .overloaded, message: context.overloadMessage(size)),
             timing: HopTiming(name: context.configuration.service, started: EventLoop.nanoseconds(), trace: nil), forceClose: true)
    }

    func expire() {
        guard !closed else { return }
        if writing {
            context.metrics.writeTimeouts += 1
            context.log.warning("closing a client connection: its client read no response for \(context.configuration.writeTimeout) ms (--write-timeout)")
            handle.setResetOnClose()
            return close()
        }
        guard !busy else { return }
        if !receivedAny {
            close()
            return
        }
        busy = true
        deadline = 0
        requestIsHead = false
        requestKeepAlive = false
        context.metrics.recordFailure(service: context.configuration.service, kind: .badInput)
        respond(failure: ServiceFailure(service: context.configuration.service, kind: .badInput,
                                        message: "request not received within \(context.configuration.requestTimeout) ms",
                                        status: 408), forceClose: true)
    }

    /// A request that has not fully come is refused with `failure` (a hand-over that cannot wait
    /// longer); a connection with nothing received just closes.
    func refuseUnfinished(_ failure: ServiceFailure) {
        guard !closed, !busy else { return }
        guard receivedAny else { return close() }
        busy = true
        deadline = 0
        head = nil
        body = nil
        bodyInBlock = nil
        requestIsHead = false
        requestKeepAlive = false
        respond(failure: failure, forceClose: true)
    }

    // MARK: In-flight slots and buffered bytes

    /// Takes one of the host's in-flight slots for the request being answered; it is given back
    /// once the response is written (or the connection is gone), not when the answer is known.
    func claimSlot() {
        guard !holdsSlot else { return }
        holdsSlot = true
        context.metrics.inFlight += 1
    }

    private func releaseSlot() {
        guard holdsSlot else { return }
        holdsSlot = false
        context.metrics.inFlight -= 1
        server.requestFinished()
    }

    private func charge(_ bytes: Int) {
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
    private func releaseAllButHeld() {
        let kept = held?.count ?? 0
        context.bufferedBytes -= charged - kept
        charged = kept
    }

    // MARK: Responding

    /// Writes a response; `fields` appends header lines, `body`'s owner keeps it alive until written.
    func respond(status: Int, body: OwnedBytes, forceClose: Bool = false, fields: (ByteStore) -> Void) {
        guard !closed, !writing, relaySource == nil else { return }
        let head = composeHead(status: status, contentLength: body.count, forceClose: forceClose, fields: fields)
        let sent = requestIsHead ? .empty : body
        finishAfterWrite = true
        // A forced close may leave bytes of the request unread: those make the close a reset,
        // which would drop what waits for it, so that response goes out on its own.
        write(head.bytes, sent, closing: !responseKeepAlive && !forceClose)
    }

    /// Starts the response head in the host's scratch buffer (the write copies what the kernel
    /// does not take at once); logs the request when the access log is on.
    private func composeHead(status: Int, contentLength: Int, forceClose: Bool, fields: (ByteStore) -> Void) -> ByteStore {
        // A client that closed its sending side still gets the answers to what it sent ahead.
        let keepAlive = requestKeepAlive && !forceClose && !context.draining && !(peerClosed && held == nil)
        if context.configuration.accessLog {
            let micros = requestStarted == 0 ? 0 : (EventLoop.nanoseconds() - requestStarted) / 1000
            let peer = handle.remoteAddress?.description ?? "-"
            context.log.info("\(peer) \"\(requestLine.isEmpty ? "-" : requestLine)\" \(status) \(contentLength) \(micros)us")
            requestLine = ""
            requestStarted = 0
        }
        // The request body is no longer needed (the function ran); only held bytes stay counted.
        releaseAllButHeld()
        responseKeepAlive = keepAlive
        return HTTPWriter.responseHead(status: status, contentLength: contentLength, keepAlive: keepAlive,
                                       into: context.scratch, fields: fields)
    }

    /// Writes bytes of the response; the connection counts what the kernel has not taken yet.
    /// `closing`: these bytes end the response and the connection closes after it (when the
    /// kernel takes them all, `written` closes at once), so the FIN may go with them. Not with
    /// bytes held from a pipelining client: more may be unread.
    private func write(_ head: UnsafeRawBufferPointer, _ body: OwnedBytes, closing: Bool = false) {
        let closing = closing && held == nil && queuedWrites == 0
        track(handle.write(head, body, closing: closing), bytes: body.count)
    }

    private func track(_ status: WriteStatus, bytes: Int) {
        switch status {
        case .done:
            if queuedWrites == 0 { written(nil) }
        case .pending:
            queuedWrites += 1
            writing = true
            charge(bytes)
            deadline = EventLoop.nanoseconds() + UInt64(context.configuration.writeTimeout) * 1_000_000
        case .failed(let error):
            written(error)
        }
    }

    func handleWriteDone(_ error: LoopError?) {
        queuedWrites -= 1
        if queuedWrites == 0 || error != nil { written(error) }
    }

    /// Everything written so far is with the kernel (or a write failed).
    private func written(_ error: LoopError?) {
        if writing, queuedWrites == 0 || error != nil {
            writing = false
            releaseAllButHeld()
            deadline = 0
        }
        if error != nil { return close() }
        if let source = relaySource {
            // Relaying: the response ends with the peer's body; until then read on.
            return source.resumeRelay()
        }
        guard finishAfterWrite else { return }
        finishAfterWrite = false
        releaseSlot()
        if !responseKeepAlive { close() } else { next() }
    }

    /// The response is complete once the bytes written so far are with the kernel.
    private var finishAfterWrite = false
    /// Writes the kernel has not finished yet (uv_write requests in flight).
    private var queuedWrites = 0

    // MARK: Relaying

    /// The hop whose response streams to this connection, while it does.
    private var relaySource: HopClient?
    /// The relayed answer's head waits in the host's scratch buffer for the first piece of body,
    /// to go out with it in one write. It never waits past the hop's read callback (the hop
    /// flushes it when a read ends before the body), so nothing else writes the buffer meanwhile.
    private var headInScratch = false

    /// Answers with a next hop's response as it arrives: `answer` (with the relayed head) goes
    /// out together with the first piece of the body, in one write; the pieces follow as
    /// `hop` reads them, and reading pauses while this client's socket is full.
    func relay(_ answer: Answer, from hop: HopClient) {
        guard !closed, !writing, relaySource == nil, let length = answer.relayed?.contentLength else { return }
        relaySource = hop
        if let timing = answer.timing { tracer.finish(timing, status: answer.status, failure: nil) }
        _ = composeHead(status: answer.status, contentLength: length, forceClose: false) { answer.appendFields(to: $0) }
        headInScratch = true
        hop.attach(self)
        if length == 0 { relayEnded() }
    }

    /// A piece of the relayed body, kept alive by its read block until written (with the head,
    /// the first time). Returns false when the kernel did not take everything: the hop then
    /// pauses until `resumeRelay`. `last`: the piece completes the body, and the hop reports
    /// `relayEnded` before it returns to the loop.
    func relayPiece(_ piece: OwnedBytes, last: Bool) -> Bool {
        guard !closed, relaySource != nil else { return true }
        if requestIsHead { return flushRelay() }
        let head = headInScratch ? context.scratch.bytes : UnsafeRawBufferPointer(start: nil, count: 0)
        headInScratch = false
        // The last piece ends the response, and the connection with it when it is not kept
        // (`relayEnded` closes it).
        write(head, piece, closing: last && !responseKeepAlive)
        return !writing
    }

    /// Writes the relayed head if it still waits; false when the kernel did not take everything.
    @discardableResult
    func flushRelay() -> Bool {
        guard !closed else { return true }
        if headInScratch {
            headInScratch = false
            write(context.scratch.bytes, .empty)
        }
        return !writing
    }

    /// The relayed body is complete: the response ends once the kernel has it all.
    func relayEnded() {
        guard !closed, relaySource != nil else { return }
        relaySource = nil
        finishAfterWrite = true
        if headInScratch {
            // The head of an answer with no body (Content-Length: 0) still waits.
            flushRelay()
        } else if !writing {
            written(nil)
        }
    }

    /// The next hop failed after its head was relayed: the client's response can only be cut
    /// short (it sees fewer bytes than Content-Length said). The hop logged why.
    func relayBroken() {
        relaySource = nil
        headInScratch = false
        handle.setResetOnClose()
        close()
    }

    /// Writes a failure of the host itself (not of a service's request): no Server-Timing.
    func respond(failure: ServiceFailure, forceClose: Bool = false) {
        send(failure, timing: nil, forceClose: forceClose)
    }

    /// Gets ready for the next request on a keep-alive connection.
    private func next() {
        guard !closed else { return }
        busy = false
        answered = true
        receivedAny = held != nil
        parser.resume()
        armRequestTimeout()
        pump()
    }

    func close() {
        guard !closed else { return }
        closed = true
        deadline = 0
        writing = false
        context.untrack(self)
        relaySource?.abortRelay()
        relaySource = nil
        headInScratch = false
        handle.close(nil)
        held = nil
        releaseAllButHeld()
        context.returnParser(parser)
        releaseSlot()
        server.connectionClosed(self)
    }
}
