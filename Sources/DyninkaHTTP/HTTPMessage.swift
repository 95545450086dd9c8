/// A whole HTTP/1.1 response read by a simple client (one response per connection, read until
/// the server closed): parsed by the same llhttp engine the host uses, never by hand.
package struct HTTPMessage: Sendable {
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
}
