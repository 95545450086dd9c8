import DyninkaHTTP
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A response as a test sees it.
struct TestResponse: CustomStringConvertible {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    var description: String { "\(status) \(headers) \(text)" }

    /// The error object of a wire-protocol failure body.
    var error: (service: String, kind: String, message: String)? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let error = object["error"] as? [String: Any],
              let service = error["service"] as? String, let kind = error["kind"] as? String,
              let message = error["message"] as? String else { return nil }
        return (service, kind, message)
    }

    func json() -> [String: Any]? { try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] }
}

enum RawHTTPError: Error { case connect(Int32), timeout, closedWithoutResponse(String) }

/// A blocking HTTP/1.1 client over a plain socket: sends exactly the bytes asked for, so tests
/// can also send what no well-behaved client would.
struct RawHTTP {
    var port: Int
    var timeout: Double = 10
    /// The server's IPv4 address.
    var host = "127.0.0.1"

    /// Connects; `receiveBuffer` (SO_RCVBUF) is set before the connection is made, as a small
    /// buffer set afterwards can stall the transfer (the window was announced already). Without
    /// `waiting`, the socket is non-blocking and the connection may still be under way.
    func connect(receiveBuffer: Int32? = nil, waiting: Bool = true) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | (waiting ? 0 : Int32(SOCK_NONBLOCK.rawValue)), 0)
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr(host)
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if result != 0, waiting || errno != EINPROGRESS {
            let code = errno
            close(fd)
            throw RawHTTPError.connect(code)
        }
        return fd
    }

    /// Sends raw bytes and reads until the server closes; returns the parsed response.
    func exchange(_ bytes: [UInt8]) throws -> TestResponse {
        let fd = try connect()
        defer { close(fd) }
        try send(fd, bytes)
        return try readResponse(fd)
    }

    func send(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Reads one response that ends with the connection (Connection: close).
    func readResponse(_ fd: Int32) throws -> TestResponse {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK { throw RawHTTPError.timeout }
                break
            }
            if n == 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        guard let response = Self.parse(data) else { throw RawHTTPError.closedWithoutResponse(String(decoding: data, as: UTF8.self)) }
        return response
    }

    /// Parses a whole response with the host's own HTTP engine; with `headOnly`, the head is
    /// enough. A response that is only a head (the answer to HEAD) is taken as it is.
    static func parse(_ data: [UInt8], headOnly: Bool = false) -> TestResponse? {
        let onlyHead = headOnly || data.suffix(4) == [13, 10, 13, 10]
        return (HTTPMessage.response(data) ?? (onlyHead ? HTTPMessage.response(data, headOnly: true) : nil))
            .map { TestResponse(status: $0.status, headers: $0.headers, body: $0.body) }
    }

    /// POSTs JSON to the service with optional route and argument headers.
    func post(_ body: String = "", route: String? = nil, arguments: String? = nil, path: String = "/",
              extra: [(String, String)] = []) throws -> TestResponse {
        try exchange(Self.post(body, route: route, arguments: arguments, path: path, extra: extra))
    }

    func get(_ path: String) throws -> TestResponse { try exchange(Self.get(path)) }

    /// The bytes of a POST of JSON with optional route and argument headers (Connection: close).
    static func post(_ body: String = "", route: String? = nil, arguments: String? = nil, path: String = "/",
                     extra: [(String, String)] = []) -> [UInt8] {
        var head = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
        if let route { head += "Dyninka-Route: \(route)\r\n" }
        if let arguments { head += "Dyninka-Args: \(arguments)\r\n" }
        for (name, value) in extra { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(body.utf8.count)\r\n\r\n"
        return Array((head + body).utf8)
    }

    /// The bytes of a GET (Connection: close).
    static func get(_ path: String) -> [UInt8] {
        Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    }
}
