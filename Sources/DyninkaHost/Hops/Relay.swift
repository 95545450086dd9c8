import DyninkaHTTP
import DyninkaLoop

/// One answer relayed cut-through from a next hop to a client connection, made when the hop's
/// response head arrives and gone when its body has been relayed (or either side failed).
///
/// It owns what the relay needs and nothing else needs: the answer's head, which waits in the
/// relay's own buffer for the first piece of body so that both go out in one write, and the
/// counts of body bytes declared and relayed. The hop (`HopClient`) feeds it pieces from the
/// loop's read blocks; the client connection (`InboundConnection`) writes them and says when its
/// socket took them. Relays are pooled by the host's context: none is allocated per request
/// once the host is warm.
final class Relay {
    /// The hop the body comes from, while it does.
    private(set) var source: HopClient?
    /// The client connection the body goes to, while it does.
    private(set) unowned(unsafe) var sink: InboundConnection?
    /// The answer's head, until it goes out with the first piece of body (or alone).
    let head = ByteStore(capacity: 1024)
    /// The head has not been written yet.
    private(set) var headPending = false
    /// Body bytes the head declared, and how many were relayed so far.
    private(set) var declared = 0
    private(set) var relayed = 0

    /// Starts relaying `declared` body bytes from `source` to `sink` (the head is in `head`).
    func begin(from source: HopClient, to sink: InboundConnection, declared: Int) {
        self.source = source
        self.sink = sink
        self.declared = declared
        relayed = 0
        headPending = true
    }

    /// Whether the body is complete.
    var complete: Bool { relayed >= declared }

    /// The head, the first time it is asked for (then nothing): it goes out with what follows.
    func takeHead() -> UnsafeRawBufferPointer {
        guard headPending else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        headPending = false
        return head.bytes
    }

    /// A piece of the body arrived from the hop: the client connection writes it. Returns
    /// false when its socket did not take everything (the hop then pauses until `resume`).
    func piece(_ bytes: OwnedBytes) -> Bool {
        relayed += bytes.count
        guard let sink else { return true }
        return sink.relayPiece(bytes, last: complete, of: self)
    }

    /// A read from the hop ended before any body: a head still waiting goes out now. Returns
    /// false when the client's socket did not take it all.
    func flush() -> Bool {
        guard let sink else { return true }
        return sink.flushRelay(self)
    }

    /// The hop's response is complete.
    func ended() {
        source = nil
        sink?.relayEnded(self)
    }

    /// The hop failed after the head went to the client: its response can only be cut short.
    func broken() {
        source = nil
        let sink = self.sink
        self.sink = nil
        sink?.relayBroken()
    }

    /// The client's socket took everything written so far: the hop reads on.
    func resume() { source?.resumeRelay() }

    /// The client connection is gone: the hop stops and drops its peer's connection.
    func abort() {
        sink = nil
        let source = self.source
        self.source = nil
        source?.abortRelay()
    }

    /// Forgets both ends, for the pool.
    func reset() {
        source = nil
        sink = nil
        headPending = false
        declared = 0
        relayed = 0
    }
}
