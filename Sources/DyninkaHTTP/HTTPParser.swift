private import CLLHTTP

/// Why a message could not be parsed; each maps to one HTTP status.
package enum HTTPParseError: Error, Equatable, CustomStringConvertible {
    /// Not HTTP/1.x as llhttp understands it (400).
    case malformed(String)
    /// The request line and header fields exceed the limit (431).
    case headersTooLarge(limit: Int)
    /// The body exceeds the limit (413).
    case bodyTooLarge(limit: Int)
    /// The peer closed before the message was complete.
    case incomplete

    /// The HTTP status a server answers this error with.
    package var status: Int {
        switch self {
        case .malformed, .incomplete: 400
        case .headersTooLarge: 431
        case .bodyTooLarge: 413
        }
    }

    package var description: String {
        switch self {
        case .malformed(let reason): "malformed HTTP: \(reason)"
        case .headersTooLarge(let limit): "header section larger than \(limit) bytes"
        case .bodyTooLarge(let limit): "body larger than \(limit) bytes"
        case .incomplete: "connection closed before the message was complete"
        }
    }
}

/// What `feed` did with the bytes it was given.
package enum HTTPFeedResult: Equatable {
    /// Everything was consumed; more bytes are welcome.
    case needMore
    /// A message completed after `consumed` bytes; parsing is paused until `resume()`.
    /// Bytes after `consumed` belong to the next message.
    case messageComplete(consumed: Int)
    /// The bytes are not acceptable; the connection should be answered and closed.
    case failed(HTTPParseError)
}

/// Receives the parts of a message as the parser finds them.
package protocol HTTPParserDelegate: AnyObject {
    /// The head is complete. The body, if any, follows through `parserBody`.
    func parserHead(_ head: HTTPHead)
    /// A piece of the body; the bytes are valid only during the call.
    func parserBody(_ bytes: UnsafeRawBufferPointer)
}

/// An incremental HTTP/1.x parser (llhttp), for requests or responses, with size limits.
///
/// Feed it bytes as they arrive, split anywhere. It pauses after each complete message, so a
/// server answers one request before it reads the next (no pipelining surprises).
package final class HTTPParser {
    package enum Kind { case request, response }

    package let kind: Kind
    /// The most bytes the request line / status line and header fields may take.
    package let maxHeaderBytes: Int
    /// The most bytes the body may take.
    package let maxBodyBytes: Int
    /// Receives the message parts. Not retained: the delegate owns the parser and outlives it
    /// (a weak reference cost an atomic load on every callback).
    package unowned(unsafe) var delegate: HTTPParserDelegate?

    // Heap-allocated: llhttp keeps pointers to both, and callbacks read the parser while
    // llhttp_execute runs (an inout Swift property would be an exclusivity violation).
    private let parser = UnsafeMutablePointer<llhttp_t>.allocate(capacity: 1)
    /// The callbacks are the same for every parser: one table for the process.
    nonisolated(unsafe) private static let settings: UnsafeMutablePointer<llhttp_settings_t> = {
        let settings = UnsafeMutablePointer<llhttp_settings_t>.allocate(capacity: 1)
        settings.initialize(to: llhttp_settings_t())
        llhttp_settings_init(settings)
        settings.pointee.on_message_begin = { p in HTTPParser.with(p) { $0.messageBegin() } }
        settings.pointee.on_url = { p, at, length in HTTPParser.with(p) { $0.url(at, length) } }
        settings.pointee.on_status = { p, _, length in HTTPParser.with(p) { $0.countHeader(length) } }
        settings.pointee.on_header_field = { p, at, length in HTTPParser.with(p) { $0.field(at, length) } }
        settings.pointee.on_header_value = { p, at, length in HTTPParser.with(p) { $0.value(at, length) } }
        settings.pointee.on_header_value_complete = { p in HTTPParser.with(p) { $0.valueComplete() } }
        settings.pointee.on_headers_complete = { p in HTTPParser.with(p) { $0.headersComplete() } }
        settings.pointee.on_body = { p, at, length in HTTPParser.with(p) { $0.body(at, length) } }
        settings.pointee.on_message_complete = { p in HTTPParser.with(p) { $0.messageComplete() } }
        return settings
    }()
    /// Header bytes of the message being parsed; handed to a head without copying.
    private var storage = ByteStore(capacity: 512)
    private var fields: [(name: Int, value: Int, end: Int)] = []
    private var headerBytes = 0
    private var bodyBytes = 0
    /// The next header-field bytes begin a new field (set after each value, even an empty one).
    private var startNewField = true
    private var limitError: HTTPParseError?
    private var completed = false
    private lazy var url = ByteStore(capacity: 64)

    package init(kind: Kind, maxHeaderBytes: Int = 16 * 1024, maxBodyBytes: Int = 8 * 1024 * 1024) {
        self.kind = kind
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
        parser.initialize(to: llhttp_t())
        llhttp_init(parser, kind == .request ? HTTP_REQUEST : HTTP_RESPONSE, Self.settings)
    }

    deinit { parser.deallocate() }

    /// Feeds received bytes.
    package func feed(_ bytes: UnsafeRawBufferPointer) -> HTTPFeedResult {
        guard bytes.count > 0, let start = bytes.baseAddress else { return .needMore }
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let chars = start.assumingMemoryBound(to: CChar.self)
        let result = llhttp_execute(parser, chars, bytes.count)
        return outcome(result, start: chars)
    }

    /// Tells the parser the peer closed; completes a message whose end is the connection's end.
    package func finish() -> HTTPFeedResult {
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let result = llhttp_finish(parser)
        if completed { return .messageComplete(consumed: 0) }
        if result == HPE_OK { return headerBytes == 0 ? .needMore : .failed(.incomplete) }
        if result == HPE_INVALID_EOF_STATE { return .failed(.incomplete) }
        return outcome(result, start: nil)
    }

    /// Continues after `.messageComplete`; feed the remaining bytes next.
    package func resume() {
        completed = false
        headerBytes = 0
        llhttp_resume(parser)
    }

    /// Starts over for a new connection.
    package func reset() {
        completed = false
        headerBytes = 0
        bodyBytes = 0
        limitError = nil
        delegate = nil
        // A fresh state for the same kind (llhttp_reset would keep a paused or failed state).
        llhttp_init(parser, kind == .request ? HTTP_REQUEST : HTTP_RESPONSE, Self.settings)
    }

    private func outcome(_ result: llhttp_errno_t, start: UnsafePointer<CChar>?) -> HTTPFeedResult {
        switch result {
        case HPE_OK:
            return .needMore
        case HPE_PAUSED where completed:
            let position = llhttp_get_error_pos(parser)
            let consumed = (start != nil && position != nil) ? position! - start! : 0
            return .messageComplete(consumed: consumed)
        default:
            if let limitError { return .failed(limitError) }
            let name = String(cString: llhttp_errno_name(result))
            let reason = parser.pointee.reason.map { String(cString: $0) } ?? "parse error"
            return .failed(.malformed("\(reason) (\(name))"))
        }
    }

    /// Runs a callback on the parser that `feed` or `finish` stored in llhttp's data pointer; the
    /// caller holds the parser for the whole execute, so no retain and release per callback.
    @inline(__always)
    private static func with(_ p: UnsafeMutablePointer<llhttp_t>?, _ body: (HTTPParser) -> Int32) -> Int32 {
        Unmanaged<HTTPParser>.fromOpaque(p!.pointee.data!)._withUnsafeGuaranteedRef(body)
    }

    // MARK: llhttp callbacks (0 continues, anything else stops)

    private func messageBegin() -> Int32 {
        headerBytes = 0
        bodyBytes = 0
        startNewField = true
        limitError = nil
        if kind == .request { url.removeAll() }
        // Reuse the header storage unless the previous head is still held by its consumer.
        if isKnownUniquelyReferenced(&storage) {
            storage.removeAll()
        } else {
            storage = ByteStore(capacity: 512)
        }
        fields.removeAll(keepingCapacity: true)
        return 0
    }

    private func countHeader(_ length: Int) -> Int32 {
        headerBytes += length
        if headerBytes > maxHeaderBytes {
            limitError = .headersTooLarge(limit: maxHeaderBytes)
            return -1
        }
        return 0
    }

    private func url(_ at: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        if countHeader(length) != 0 { return -1 }
        url.append(UnsafeRawBufferPointer(start: at, count: length))
        return 0
    }

    private func field(_ at: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        // ": " and CRLF count once per field, not once per piece of a name cut by a read.
        if countHeader(length + (startNewField ? 4 : 0)) != 0 { return -1 }
        if startNewField {
            let start = storage.count
            fields.append((start, start, start))
            startNewField = false
        }
        storage.append(UnsafeRawBufferPointer(start: at, count: length))
        let end = storage.count
        fields[fields.count - 1].value = end
        fields[fields.count - 1].end = end
        return 0
    }

    private func value(_ at: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        if countHeader(length) != 0 { return -1 }
        storage.append(UnsafeRawBufferPointer(start: at, count: length))
        fields[fields.count - 1].end = storage.count
        return 0
    }

    private func valueComplete() -> Int32 {
        startNewField = true
        return 0
    }

    private func headersComplete() -> Int32 {
        let head = HTTPHead(storage: storage)
        head.fields = fields
        if kind == .request {
            head.method = String(cString: llhttp_method_name(llhttp_method_t(UInt32(parser.pointee.method))))
            head.target = url.string
        } else {
            head.status = Int(parser.pointee.status_code)
        }
        head.versionMinor = Int(parser.pointee.http_minor)
        head.keepAlive = llhttp_should_keep_alive(parser) != 0
        if head.index(of: "content-length") != nil {
            head.contentLength = Int(truncatingIfNeeded: parser.pointee.content_length)
            if parser.pointee.content_length > UInt64(maxBodyBytes) {
                limitError = .bodyTooLarge(limit: maxBodyBytes)
                return -1
            }
        }
        delegate?.parserHead(head)
        return 0
    }

    private func body(_ at: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        bodyBytes += length
        if bodyBytes > maxBodyBytes {
            limitError = .bodyTooLarge(limit: maxBodyBytes)
            return -1
        }
        delegate?.parserBody(UnsafeRawBufferPointer(start: at, count: length))
        return 0
    }

    private func messageComplete() -> Int32 {
        completed = true
        return Int32(HPE_PAUSED.rawValue)
    }
}
