import DyninkaHTTP
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An HTTP response read by `BlockingHTTP`.
package struct HTTPReply: Sendable {
    package var status: Int
    /// Header names lowercased.
    package var headers: [String: String]
    package var body: [UInt8]
    package var text: String { String(decoding: body, as: UTF8.self) }
}

/// A small blocking HTTP/1.1 client for loopback control traffic (health checks, driving a
/// dataflow from the CLI): one connection per request, `Connection: close`.
package enum BlockingHTTP {
    package struct Failure: Error, CustomStringConvertible, Sendable { package var description: String }

    /// Sends a request to `host`:`port` (an IPv4 address; 127.0.0.1 by default) and reads the
    /// whole response. `namespace`: a network namespace (a test bed node) to connect from.
    package static func request(host: String = "127.0.0.1", port: Int, method: String = "GET", path: String = "/",
                               headers: [(String, String)] = [], body: String = "", timeout: Double = 10,
                               namespace: String? = nil) throws(Failure) -> HTTPReply {
        let fd = try connect(host: host, port: port, timeout: timeout, namespace: namespace)
        defer { close(fd) }
        let hasBody = method != "GET" || !body.isEmpty
        let head = HTTPWriter.requestHead(method: method, target: path, host: "\(host):\(port)",
                                          fields: headers + (hasBody ? [("Content-Type", "application/json")] : []),
                                          contentLength: hasBody ? body.utf8.count : nil)
        let request = head.array + Array(body.utf8)
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(description: "sending to \(host):\(port) failed") }
            sent += n
        }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { throw Failure(description: "no answer from \(host):\(port) within \(timeout) s") }
            if n == 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        guard let reply = parse(data) else { throw Failure(description: "\(host):\(port) closed without a valid response") }
        return reply
    }

    /// A connected TCP socket to `host`:`port` (an IPv4 address) from `namespace`, with send and
    /// receive timeouts of `timeout` seconds; the caller closes it.
    package static func connect(host: String = "127.0.0.1", port: Int, timeout: Double = 10, namespace: String? = nil) throws(Failure) -> Int32 {
        let fd: Int32
        do { fd = try NetworkNamespace.socket(in: namespace, type: Int32(SOCK_STREAM.rawValue)) } catch {
            throw Failure(description: error.description)
        }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr(host)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "cannot connect to \(host):\(port) (\(reason))")
        }
        return fd
    }

    static func parse(_ data: [UInt8]) -> HTTPReply? {
        HTTPMessage.response(data).map { HTTPReply(status: $0.status, headers: $0.headers, body: $0.body) }
    }

    /// A port no one listens on right now (the kernel's choice).
    package static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                _ = bind(fd, $0, length)
                _ = getsockname(fd, $0, &length)
            }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
