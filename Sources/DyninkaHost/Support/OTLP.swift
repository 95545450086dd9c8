import DyninkaHTTP
import DyninkaRoute
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Spans in OTLP/JSON (opentelemetry-proto's ExportTraceServiceRequest in its JSON mapping: ids
/// as lowercase hex, 64-bit integers as decimal strings), and the plain HTTP/1.1 POST that sends
/// them to an OTLP/HTTP receiver.
package enum OTLP {
    /// Who produced the spans: OpenTelemetry's resource attributes.
    package struct Resource: Sendable {
        package var service: String
        package var app: String
        package var instance: String

        package init(service: String, app: String, instance: String) {
            self.service = service
            self.app = app
            self.instance = instance
        }
    }

    /// SPAN_KIND_SERVER: every span is a host answering a request.
    static let serverKind = 2

    /// One ExportTraceServiceRequest holding `spans`, times shifted by `clockOffset` (monotonic to
    /// Unix nanoseconds).
    package static func encode(_ spans: [SpanRecord], resource: Resource, clockOffset: UInt64) -> String {
        var out = "{\"resourceSpans\":[{\"resource\":{\"attributes\":["
        out += attribute("service.name", string: resource.service) + ","
        out += attribute("service.namespace", string: resource.app) + ","
        out += attribute("service.instance.id", string: resource.instance)
        out += "]},\"scopeSpans\":[{\"scope\":{\"name\":\"dyninka-host\",\"version\":\"1\"},\"spans\":["
        for (index, span) in spans.enumerated() {
            if index > 0 { out += "," }
            out += "{\"traceId\":\"\(span.trace.traceID)\",\"spanId\":\"\(TraceContext.hex(span.trace.span))\""
            if span.trace.parent != 0 { out += ",\"parentSpanId\":\"\(TraceContext.hex(span.trace.parent))\"" }
            if let state = span.trace.state { out += ",\"traceState\":\(JSONText.quote(state))" }
            out += ",\"name\":\(JSONText.quote(span.name)),\"kind\":\(serverKind)"
            out += ",\"startTimeUnixNano\":\"\(span.start &+ clockOffset)\",\"endTimeUnixNano\":\"\(span.end &+ clockOffset)\""
            var attributes = [attribute("http.response.status_code", int: UInt64(span.status)),
                              attribute("dyninka.function_ns", int: span.function)]
            if let next = span.next {
                attributes.append(attribute("dyninka.next", string: next))
                if span.forward != 0 { attributes.append(attribute("dyninka.forward_start_unix_nano", int: span.forward &+ clockOffset)) }
            }
            if let failed = span.failedService { attributes.append(attribute("dyninka.failed_service", string: failed)) }
            out += ",\"attributes\":[\(attributes.joined(separator: ","))]"
            if let message = span.message {
                out += ",\"status\":{\"code\":2,\"message\":\(JSONText.quote(message))}"
            } else if span.status >= 500 {
                out += ",\"status\":{\"code\":2}"
            } else {
                out += ",\"status\":{\"code\":1}"
            }
            out += "}"
        }
        out += "]}]}]}"
        return out
    }

    private static func attribute(_ key: String, string value: String) -> String {
        "{\"key\":\"\(key)\",\"value\":{\"stringValue\":\(JSONText.quote(value))}}"
    }

    private static func attribute(_ key: String, int value: UInt64) -> String {
        "{\"key\":\"\(key)\",\"value\":{\"intValue\":\"\(value)\"}}"
    }

    /// Host, port and path of an `http://HOST:PORT/PATH` endpoint (the path defaults to
    /// /v1/traces, OTLP/HTTP's); nil for anything else.
    package static func endpoint(_ url: String) -> (host: String, port: Int, path: String)? {
        guard url.hasPrefix("http://") else { return nil }
        let rest = url.dropFirst("http://".count)
        let authority = rest.prefix { $0 != "/" }
        var path = String(rest.dropFirst(authority.count))
        if path.isEmpty || path == "/" { path = "/v1/traces" }
        let host: Substring
        var port = 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { guard let p = Int(after.dropFirst()) else { return nil }; port = p }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let p = Int(authority[authority.index(after: colon)...]) else { return nil }
            port = p
        } else {
            host = authority
        }
        guard !host.isEmpty, (1...65535).contains(port) else { return nil }
        return (String(host), port, path)
    }

    /// POSTs `json` and reads the status line; nil when the receiver answered 2xx, else what went
    /// wrong. Blocking, with 2 s timeouts: for the exporter's thread only.
    static func post(_ json: String, to endpoint: (host: String, port: Int, path: String)) -> String? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list) == 0, let first = list else {
            return "cannot resolve '\(endpoint.host)'"
        }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "socket: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            return "connect: \(String(cString: strerror(errno)))"
        }
        let body = Array(json.utf8)
        let head = HTTPWriter.requestHead(method: "POST", target: endpoint.path, host: "\(endpoint.host):\(endpoint.port)",
                                          fields: [("Content-Type", "application/json")], contentLength: body.count)
        for part in [head.array, body] {
            var sent = 0
            while sent < part.count {
                let n = part.withUnsafeBytes { send(fd, $0.baseAddress! + sent, part.count - sent, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return "send: \(String(cString: strerror(errno)))" }
                sent += n
            }
        }
        var reply = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &reply, reply.count, 0)
        guard n > 0, let answer = HTTPMessage.response(Array(reply[0..<n]), headOnly: true) else { return "no answer" }
        return (200..<300).contains(answer.status) ? nil : "answered \(answer.status)"
    }
}
