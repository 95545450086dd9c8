/// A whole HTTP/1.1 message read by a simple client or server (one per connection): a response
/// read until the server closed, or a request read until it is complete. Parsed by the same
/// llhttp engine the host uses, never by hand.
package struct HTTPMessage: Sendable {
    /// Request method and target ("POST", "/v1/traces"); empty for responses.
    package var method = ""
    package var target = ""
    package var status: Int
    /// Header fields in order, names as sent.
    package var fields: [(name: String, value: String)]
    package var body: [UInt8]
    /// The connection may carry another message (HTTP/1.1 without `Connection: close`).
    package var keepAlive = false

    /// Fields by lowercased name (the last one wins).
    package var headers: [String: String] {
        var out: [String: String] = [:]
        for (name, value) in fields { out[name.lowercased()] = value }
        return out
    }

    /// Parses `bytes` as one response that ends where they end (its Content-Length, or the end
    /// of the connection); nil when they are not a complete response. With `headOnly`, the head
    /// is enough: the body is whatever follows it, up to Content-Length.
    package static func response(_ bytes: [UInt8], headOnly: Bool = false) -> HTTPMessage? {
        let reader = Reader(.response, maxHeaderBytes: 1 << 20, maxBodyBytes: 1 << 30)
        var parsed = bytes.withUnsafeBytes { reader.feed($0) }
        if case .needMore = parsed {
            if headOnly { return reader.soFar }
            parsed = reader.finish()
        }
        guard case .complete(let message, _) = parsed else { return nil }
        return message
    }

    /// What a `Reader` made of the bytes so far.
    package enum Parsed: Sendable {
        /// A whole message; `trailing` bytes of the last read came after it.
        case complete(HTTPMessage, trailing: Int)
        /// Not a whole message yet: read more.
        case needMore
        /// Not HTTP, or over the limits.
        case invalid(HTTPParseError)
    }

    /// Reads one message as its bytes arrive (a small blocking server's or client's connection),
    /// each byte parsed once: a request, or a response, whose body may end with the connection
    /// (`finish`).
    package final class Reader: HTTPParserDelegate {
        private let parser: HTTPParser
        private var head: HTTPHead?
        private var body: [UInt8] = []

        package init(_ kind: HTTPParser.Kind, maxHeaderBytes: Int = 16 * 1024, maxBodyBytes: Int) {
            parser = HTTPParser(kind: kind, maxHeaderBytes: maxHeaderBytes, maxBodyBytes: maxBodyBytes)
            parser.delegate = self
        }

        package func parserHead(_ head: HTTPHead) { self.head = head }
        package func parserBody(_ bytes: UnsafeRawBufferPointer) { body.append(contentsOf: bytes) }

        /// The head and the body so far, once the head is complete.
        package var soFar: HTTPMessage? {
            head.map { HTTPMessage(method: $0.method, target: $0.target, status: $0.status, fields: $0.allFields, body: body, keepAlive: $0.keepAlive) }
        }

        /// Feeds the next bytes read.
        package func feed(_ bytes: UnsafeRawBufferPointer) -> Parsed {
            parsed(parser.feed(bytes), count: bytes.count)
        }

        /// The peer closed: a response whose body ends with the connection is complete now.
        package func finish() -> Parsed {
            switch parser.finish() {
            case .needMore: .invalid(.incomplete)
            case let result: parsed(result, count: 0)
            }
        }

        private func parsed(_ result: HTTPFeedResult, count: Int) -> Parsed {
            switch result {
            case .needMore:
                return .needMore
            case .failed(let error):
                return .invalid(error)
            case .messageComplete(let consumed):
                guard let message = soFar else { return .invalid(.incomplete) }
                return .complete(message, trailing: max(0, count - consumed))
            }
        }
    }
}
