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

    /// A request head: request line, Host, the given fields, Content-Length, Connection: close.
    package static func requestHead(method: String, target: String, host: String, fields: [(String, String)],
                                    contentLength: Int, into buffer: ByteStore = ByteStore(capacity: 256)) -> ByteStore {
        buffer.append(string: method)
        buffer.append(" ")
        buffer.append(string: target)
        buffer.append(" HTTP/1.1\r\nHost: ")
        buffer.append(string: host)
        buffer.append("\r\n")
        for (name, value) in fields {
            appendField(name, value, to: buffer)
        }
        buffer.append("Content-Length: ")
        buffer.append(decimal: contentLength)
        buffer.append("\r\nConnection: close\r\n\r\n")
        return buffer
    }

    /// Appends one field; CR and LF in the value are replaced so a value can never split the head.
    package static func appendField(_ name: String, _ value: String, to buffer: ByteStore) {
        buffer.append(string: name)
        buffer.append(": ")
        if value.utf8.contains(where: { $0 == 13 || $0 == 10 }) {
            buffer.append(string: String(value.map { $0 == "\r" || $0 == "\n" || $0 == "\r\n" ? " " : $0 }))
        } else {
            buffer.append(string: value)
        }
        buffer.append("\r\n")
    }
}
