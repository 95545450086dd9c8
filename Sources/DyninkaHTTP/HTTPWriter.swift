/// Writes HTTP/1.1 message heads into ByteBuffers; bodies are written beside them, never copied in.
package enum HTTPWriter {
    /// The reason phrase for the statuses this project sends.
    package static func reason(_ status: Int) -> StaticString {
        switch status {
        case 200: "OK"
        case 204: "No Content"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 413: "Content Too Large"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: "Status"
        }
    }

    /// A response head whose fields are written by `fields` straight into the buffer, then
    /// Content-Length and Connection. `fields` appends complete lines ("Name: value\r\n").
    /// With `into`, the head replaces that buffer's contents (a reused scratch buffer).
    package static func responseHead(status: Int, contentLength: Int, keepAlive: Bool, capacity: Int = 256,
                                     into reused: ByteStore? = nil, fields: (ByteStore) -> Void) -> ByteStore {
        let buffer = reused ?? ByteStore(capacity: capacity)
        buffer.removeAll()
        buffer.append("HTTP/1.1 ")
        buffer.append(decimal: status)
        buffer.append(" ")
        buffer.append(reason(status))
        buffer.append("\r\n")
        fields(buffer)
        buffer.append("Content-Length: ")
        buffer.append(decimal: contentLength)
        buffer.append(keepAlive ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\nConnection: close\r\n\r\n")
        return buffer
    }

    /// Appends a duration in milliseconds with three decimals ("1.234"), without Foundation.
    package static func appendMilliseconds(nanoseconds: UInt64, to buffer: ByteStore) {
        let micros = Int((nanoseconds + 500) / 1000)
        buffer.append(decimal: micros / 1000)
        let fraction = micros % 1000
        buffer.append(fraction < 10 ? ".00" : fraction < 100 ? ".0" : ".")
        buffer.append(decimal: fraction)
    }

    /// A response head: status line, the given fields, Content-Length and Connection.
    package static func responseHead(status: Int, fields: [(String, String)], contentLength: Int,
                                     keepAlive: Bool, into buffer: ByteStore = ByteStore(capacity: 256)) -> ByteStore {
        buffer.append("HTTP/1.1 ")
        buffer.append(decimal: status)
        buffer.append(" ")
        buffer.append(reason(status))
        buffer.append("\r\n")
        for (name, value) in fields {
            appendField(name, value, to: buffer)
        }
        buffer.append("Content-Length: ")
        buffer.append(decimal: contentLength)
        buffer.append(keepAlive ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\nConnection: close\r\n\r\n")
        return buffer
    }

    /// A request head: request line, Host, the given fields, Content-Length (none when nil: a
    /// request without a body), and `Connection: close` unless `keepAlive`. Every head a Dyninka
    /// program writes goes through here: no text given to it (a route from the command line, a
    /// URL's path, a header value) can end a line or split the request line.
    package static func requestHead(method: String, target: String, host: String, fields: [(String, String)],
                                    contentLength: Int?, keepAlive: Bool = false,
                                    into buffer: ByteStore = ByteStore(capacity: 256)) -> ByteStore {
        appendToken(method, to: buffer)
        buffer.append(" ")
        appendToken(target, to: buffer)
        buffer.append(" HTTP/1.1\r\nHost: ")
        appendToken(host, to: buffer)
        buffer.append("\r\n")
        for (name, value) in fields {
            appendField(name, value, to: buffer)
        }
        if let contentLength {
            buffer.append("Content-Length: ")
            buffer.append(decimal: contentLength)
            buffer.append("\r\n")
        }
        buffer.append(keepAlive ? "\r\n" : "Connection: close\r\n\r\n")
        return buffer
    }

    /// Appends a part of the request line or Host: a space or control character (which would end
    /// it) is percent-encoded.
    static func appendToken(_ text: String, to buffer: ByteStore) {
        guard text.utf8.contains(where: { $0 <= 32 || $0 == 127 }) else { return buffer.append(string: text) }
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in text.utf8 {
            if byte <= 32 || byte == 127 {
                out += [UInt8(ascii: "%"), digits[Int(byte >> 4)], digits[Int(byte & 15)]]
            } else {
                out.append(byte)
            }
        }
        out.withUnsafeBytes { buffer.append($0) }
    }

    /// Appends one field; CR and LF in the value are replaced so a value can never split the head
    /// (and in the name, with a space or colon, so that it stays one name).
    package static func appendField(_ name: String, _ value: String, to buffer: ByteStore) {
        if name.utf8.contains(where: { $0 <= 32 || $0 == 58 || $0 == 127 }) {
            buffer.append(string: String(decoding: name.utf8.map { $0 <= 32 || $0 == 58 || $0 == 127 ? UInt8(ascii: "-") : $0 }, as: UTF8.self))
        } else {
            buffer.append(string: name)
        }
        buffer.append(": ")
        if value.utf8.contains(where: { $0 == 13 || $0 == 10 }) {
            buffer.append(string: String(value.map { $0 == "\r" || $0 == "\n" || $0 == "\r\n" ? " " : $0 }))
        } else {
            buffer.append(string: value)
        }
        buffer.append("\r\n")
    }
}
