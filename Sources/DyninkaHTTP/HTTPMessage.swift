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
        final class Collector: HTTPParserDelegate {
            var head: HTTPHead?
            var body: [UInt8] = []
            func parserHead(_ head: HTTPHead) { self.head = head }
            func parserBody(_ bytes: UnsafeRawBufferPointer) { body.append(contentsOf: bytes) }
        }
        let parser = HTTPParser(kind: .response, maxHeaderBytes: 1 << 20, maxBodyBytes: 1 << 30)
        let collector = Collector()
        parser.delegate = collector
        var result = bytes.withUnsafeBytes { parser.feed($0) }
        if case .needMore = result, !headOnly { result = parser.finish() }
        guard let head = collector.head else { return nil }
        switch result {
        case .messageComplete: break
        case .needMore where headOnly: break
        default: return nil
        }
        return HTTPMessage(status: head.status, fields: head.allFields, body: collector.body)
    }

    /// What a `RequestReader` made of the bytes so far.
    package enum Parsed: Sendable {
        case complete(HTTPMessage)
        /// Not a whole request yet: read more.
        case needMore
        /// Not HTTP, or over the limits.
        case invalid
    }

    /// Reads one request as its bytes arrive (a small blocking server's connection), each byte
    /// parsed once.
    package final class RequestReader: HTTPParserDelegate {
        private let parser: HTTPParser
        private var head: HTTPHead?
        private var body: [UInt8] = []

        package init(maxHeaderBytes: Int = 16 * 1024, maxBodyBytes: Int) {
            parser = HTTPParser(kind: .request, maxHeaderBytes: maxHeaderBytes, maxBodyBytes: maxBodyBytes)
            parser.delegate = self
        }

        package func parserHead(_ head: HTTPHead) { self.head = head }
        package func parserBody(_ bytes: UnsafeRawBufferPointer) { body.append(contentsOf: bytes) }

        /// Feeds the next bytes read.
        package func feed(_ bytes: UnsafeRawBufferPointer) -> Parsed {
            switch parser.feed(bytes) {
            case .needMore:
                return .needMore
            case .failed:
                return .invalid
            case .messageComplete:
                guard let head else { return .invalid }
                return .complete(HTTPMessage(method: head.method, target: head.target, status: 0, fields: head.allFields, body: body))
            }
        }
    }
}
