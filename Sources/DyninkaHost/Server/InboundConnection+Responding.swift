import DyninkaHTTP
import DyninkaLoop

// Writing a response: whole (an answer in hand, a failure) or relayed cut-through from a next
// hop through a `Relay`. Either way the response ends in `written`, once the kernel has it all.
extension InboundConnection {
    /// Writes a response; `fields` appends header lines, `body`'s owner keeps it alive until written.
    func respond(status: Int, body: OwnedBytes, forceClose: Bool = false, fields: (ByteStore) -> Void) {
        guard !isClosed, !writing else { return }
        if relay != nil { return }
        // The head is made in the host's scratch buffer: the write copies what the kernel does
        // not take at once, and nothing else writes the buffer before this returns.
        let head = composeHead(status: status, contentLength: body.count, forceClose: forceClose, into: context.scratch, fields: fields)
        let sent = request.isHead ? .empty : body
        enter(.responding(.whole))
        // A forced close may leave bytes of the request unread: those make the close a reset,
        // which would drop what waits for it, so that response goes out on its own.
        write(head.bytes, sent, closing: !responseKeepAlive && !forceClose)
    }

    /// Writes a failure of the host itself (not of a service's request): no Server-Timing.
    func respond(failure: ServiceFailure, forceClose: Bool = false) {
        send(failure, timing: nil, forceClose: forceClose)
    }

    /// Composes the response head into `buffer`; logs the request when the access log is on.
    private func composeHead(status: Int, contentLength: Int, forceClose: Bool, into buffer: ByteStore,
                             fields: (ByteStore) -> Void) -> ByteStore {
        // A client that closed its sending side still gets the answers to what it sent ahead.
        let keepAlive = request.keepAlive && !forceClose && !context.draining && !(peerClosed && held == nil)
        if context.configuration.accessLog {
            let micros = request.started == 0 ? 0 : (EventLoop.nanoseconds() - request.started) / 1000
            let peer = handle.remoteAddress?.description ?? "-"
            context.log.info("\(peer) \"\(request.line.isEmpty ? "-" : request.line)\" \(status) \(contentLength) \(micros)us")
            request.line = ""
            request.started = 0
        }
        // The request body is no longer needed (the function ran); only held bytes stay counted.
        releaseAllButHeld()
        responseKeepAlive = keepAlive
        return HTTPWriter.responseHead(status: status, contentLength: contentLength, keepAlive: keepAlive, into: buffer, fields: fields)
    }

    /// Writes bytes of the response; the connection counts what the kernel has not taken yet.
    /// `closing`: these bytes end the response and the connection closes after it (when the
    /// kernel takes them all, `written` closes at once), so the FIN may go with them. Not with
    /// bytes held from a pipelining client: more may be unread.
    private func write(_ head: UnsafeRawBufferPointer, _ body: OwnedBytes, closing: Bool = false) {
        let closing = closing && held == nil && queuedWrites == 0
        switch handle.write(head, body, closing: closing) {
        case .done:
            if queuedWrites == 0 { written(nil, drained: false) }
        case .pending:
            queuedWrites += 1
            charge(body.count)
            armWriteTimeout()
        case .failed(let error):
            written(error, drained: false)
        }
    }

    func handleWriteDone(_ error: LoopError?) {
        queuedWrites -= 1
        if queuedWrites == 0 || error != nil { written(error, drained: true) }
    }

    /// Everything written so far is with the kernel (or a write failed). `drained`: writes had
    /// waited for the kernel, and what they counted is given back.
    private func written(_ error: LoopError?, drained: Bool) {
        if drained {
            releaseAllButHeld()
            disarmWriteTimeout()
        }
        if error != nil { return close() }
        switch phase {
        case .responding(.relayed):
            // Relaying: the response ends with the peer's body; until then read on.
            relay?.resume()
        case .responding(.whole):
            releaseSlot()
            if !responseKeepAlive { close() } else { next() }
        default:
            return
        }
    }

    // MARK: Relaying

    /// Answers with a next hop's response as it arrives: `answer` (with the relayed head) goes
    /// out together with the first piece of the body, in one write; the pieces follow as
    /// `hop` reads them, and reading pauses while this client's socket is full.
    func relay(_ answer: Answer, from hop: HopClient) {
        // The outcome counts even when the client is gone, as a whole answer's does.
        record(answer, failure: nil)
        guard !isClosed, !writing, let length = answer.relayed?.contentLength else { return }
        if case .responding = phase { return }
        let relay = context.takeRelay()
        _ = composeHead(status: answer.status, contentLength: length, forceClose: false, into: relay.head) { answer.appendFields(to: $0) }
        relay.begin(from: hop, to: self, declared: length)
        self.relay = relay
        enter(.responding(.relayed))
        // The hop ends the relay when its response is complete (at once for an empty body).
        if !hop.attach(relay) { relayBroken() }
    }

    /// A piece of the relayed body, kept alive by its read block until written (with the head,
    /// the first time). Returns false when the kernel did not take everything: the hop then
    /// pauses until the relay resumes it. `last`: the piece completes the body.
    func relayPiece(_ piece: OwnedBytes, last: Bool, of relay: Relay) -> Bool {
        guard self.relay === relay else { return true }
        if request.isHead { return flushRelay(relay) }
        // The last piece ends the response, and the connection with it when it is not kept
        // (`relayEnded` closes it).
        write(relay.takeHead(), piece, closing: last && !responseKeepAlive)
        return !writing
    }

    /// Writes the relayed head if it still waits; false when the kernel did not take everything.
    @discardableResult
    func flushRelay(_ relay: Relay) -> Bool {
        guard !isClosed else { return true }
        if relay.headPending { write(relay.takeHead(), .empty) }
        return !writing
    }

    /// The relayed body is complete: the response ends once the kernel has it all. The hop has
    /// let go of the relay: it goes back to the pool.
    func relayEnded(_ relay: Relay) {
        guard self.relay === relay else { return }
        self.relay = nil
        enter(.responding(.whole))
        if relay.headPending {
            // The head of an answer with no body (Content-Length: 0) still waits.
            flushRelay(relay)
        } else if !writing {
            written(nil, drained: false)
        }
        context.returnRelay(relay)
    }

    /// The next hop failed after its head was relayed: the client's response can only be cut
    /// short (it sees fewer bytes than Content-Length said). The hop logged why.
    func relayBroken() {
        handle.setResetOnClose()
        close()
    }
}
