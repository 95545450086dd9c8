// The vocabulary of an inbound connection's life: its phases, how a response goes out, what
// the request asked for, whether the socket is watched; and what the server asks of a phase.
extension InboundConnection {
    /// Where the connection is in its life.
    enum Phase {
        /// Waiting for a request with nothing of it received; `afterAnswer`: it answered one
        /// before (a kept connection, which may be closed at any time: its client knows to retry).
        case awaiting(afterAnswer: Bool)
        /// Part of a request has come.
        case receiving
        /// A request is in and the host works on it.
        case processing
        /// Its response is going out: handed to the socket whole, or relayed from a next hop.
        case responding(Response)
        case closed
    }

    /// How a response goes out.
    enum Response {
        /// All of it was handed to the socket: it ends when the kernel has taken it.
        case whole
        /// A next hop's answer, streamed as it arrives through `relay`.
        case relayed
    }

    /// What the request being answered asked for.
    struct RequestFacts {
        /// It allows another request on this connection.
        var keepAlive = false
        /// HEAD: its response has the head of a GET and no body.
        var isHead = false
        /// "METHOD target" and start time, for the access log (only when it is on).
        var line = ""
        var started: UInt64 = 0
    }

    /// Whether the socket is watched by the loop.
    enum Reading {
        /// Not watched: nothing more is expected, or the request came whole with the accept.
        case unwatched
        case watching
        /// Paused: a pipelining client sent more ahead than `maxHeldBytes`.
        case paused
    }
}

extension InboundConnection {
    /// Busy with a request: processing it or writing its response.
    var busy: Bool {
        switch phase {
        case .processing, .responding: return true
        default: return false
        }
    }
    var isClosed: Bool { if case .closed = phase { return true } else { return false } }
    /// Waits for a request with nothing received (safe to close when draining).
    var idle: Bool { if case .awaiting = phase { return true } else { return false } }
    /// Answered a request and waits for another with nothing of it received.
    var betweenRequests: Bool { if case .awaiting(true) = phase { return true } else { return false } }
    /// Its request has not fully come yet (or, accepted with nothing received, is about to).
    var partial: Bool {
        switch phase {
        case .receiving, .awaiting(afterAnswer: false): return true
        default: return false
        }
    }
    /// The response is being written and the kernel has not taken all of it yet.
    var writing: Bool { queuedWrites > 0 && !isClosed }
}
