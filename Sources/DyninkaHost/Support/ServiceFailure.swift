import DyninkaHTTP
import DyninkaRoute

/// The kinds of failure a client can receive, each with its HTTP status (the README's wire protocol).
package enum FailureKind: String, Sendable, CaseIterable {
    /// The service function threw (500).
    case function
    /// The request or an input did not decode or was not acceptable HTTP (400, 408, 413, 431).
    case badInput = "bad-input"
    /// The route named an unknown service, had mismatched types or too many hops (400).
    case badRoute = "bad-route"
    /// The next hop refused or reset the connection, or has no address (502).
    case unreachable
    /// The next hop did not answer in time (504).
    case timeout
    /// The host has too much in flight (503, with Retry-After).
    case overloaded

    package var status: Int {
        switch self {
        case .function: 500
        case .badInput, .badRoute: 400
        case .unreachable: 502
        case .timeout: 504
        case .overloaded: 503
        }
    }
}

/// A failure as the wire protocol carries it: `{"error":{"service","kind","message"}}`.
package struct ServiceFailure: Error, Sendable, CustomStringConvertible {
    package var service: String
    package var kind: FailureKind
    package var message: String
    /// Overrides the kind's status (408, 413, 431 are bad-input with their own status).
    package var status: Int

    package init(service: String, kind: FailureKind, status: Int, message: String) {
        self.init(service: service, kind: kind, message: message, status: status)
    }

    package init(service: String, kind: FailureKind, message: String, status: Int? = nil) {
        self.service = service
        self.kind = kind
        self.message = Self.capped(message)
        self.status = status ?? kind.status
    }

    /// Longest message kept, in UTF-8 bytes: a message may echo what a client sent (a route, a
    /// header), and it is written to logs and spans and relayed back through every hop.
    package static let maxMessageBytes = 1024

    /// `message` cut to `maxMessageBytes` on a character boundary, marked as cut.
    package static func capped(_ message: String) -> String {
        guard message.utf8.count > maxMessageBytes else { return message }
        var cut = ""
        var bytes = 0
        for character in message {
            let size = character.utf8.count
            if bytes + size > maxMessageBytes - 20 { break }
            cut.append(character)
            bytes += size
        }
        return cut + " ... (message cut)"
    }

    /// The JSON body.
    package var body: ByteStore {
        let buffer = ByteStore(capacity: 96 + message.utf8.count)
        buffer.append("{\"error\":{\"service\":")
        buffer.append(string: JSONText.quote(service))
        buffer.append(",\"kind\":\"")
        buffer.append(string: kind.rawValue)
        buffer.append("\",\"message\":")
        buffer.append(string: JSONText.quote(message))
        buffer.append("}}")
        return buffer
    }

    package var description: String { "\(status) \(kind.rawValue) in '\(service)': \(message)" }
}
