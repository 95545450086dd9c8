import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A small HTTP/1.1 GET client for services that read from an endpoint (a sensor feed, a
/// config service): plain `http://`, keep-alive connections reused per host, no thread hops.
/// Much cheaper than URLSession on Linux (which goes through libcurl), and the same code works
/// when the app runs as a local program.
///
/// Calls block the calling thread for the exchange (fine for loopback and LAN endpoints; use
/// URLSession for slow or remote ones).
public enum Fetch {
    /// A GET that did not produce a 200 with a body.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// GETs `url` and decodes its JSON body as `type`.
    public static func json<T: Decodable>(_ type: T.Type, from url: String, timeout: Double = 5) throws -> T {
        let body = try bytes(from: url, timeout: timeout)
        do {
            return try body.withUnsafeBufferPointer { try FastJSON.decode(type, from: $0) }
        } catch is FastJSON.Unsupported {
            return try JSONDecoder().decode(type, from: Data(body))
        }
    }

    /// GETs `url` and returns its body.
    public static func bytes(from url: String, timeout: Double = 5) throws -> [UInt8] {
        let target = try targets.target(url)
        // A pooled connection may have been closed by the server meanwhile: retry once on a new one.
        if let fd = pool.take(target.key) {
            if let body = try? exchange(fd, target, timeout: timeout) { return body }
        }
        let fd = try connect(target, timeout: timeout)
        return try exchange(fd, target, timeout: timeout)
    }

    struct Target: Sendable {
        var host: String
        var port: Int
        var path: String
        var key: String { "\(host):\(port)" }

        init(_ url: String) throws {
            guard url.hasPrefix("http://") else { throw Failure(description: "only http:// URLs are supported, got '\(url)'") }
            let rest = url.dropFirst(7)
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            let authority = rest[..<slash]
            path = slash == rest.endIndex ? "/" : String(rest[slash...])
            if let colon = authority.lastIndex(of: ":"), let port = Int(authority[authority.index(after: colon)...]) {
                host = String(authority[..<colon])
                self.port = port
            } else {
                host = String(authority)
                port = 80
            }
            guard !host.isEmpty else { throw Failure(description: "no host in '\(url)'") }
        }
    }

    /// Idle keep-alive connections by host:port.
    final class Pool: Sendable {
        private let idle = Mutex<[String: [Int32]]>([:])
        func take(_ key: String) -> Int32? { idle.withLock { $0[key]?.popLast() } }
        func put(_ fd: Int32, _ key: String) {
            let kept = idle.withLock { idle -> Bool in
                guard (idle[key]?.count ?? 0) < 64 else { return false }
                idle[key, default: []].append(fd)
                return true
            }
            if !kept { close(fd) }
        }
    }

    static let pool = Pool()

    /// Parsed URLs: services fetch the same few URLs over and over.
    final class Targets: Sendable {
        private let parsed = Mutex<[String: Target]>([:])
        func target(_ url: String) throws -> Target {
            if let target = parsed.withLock({ $0[url] }) { return target }
            let target = try Target(url)
            parsed.withLock { if $0.count < 1024 { $0[url] = target } }
            return target
        }
    }

    static let targets = Targets()

    /// Where "\r\n\r\n" ends in `data` (memchr from one CR to the next).
    static func headEnd(_ data: [UInt8]) -> Int? {
        data.withUnsafeBytes { raw -> Int? in
            guard let base = raw.baseAddress else { return nil }
            var offset = 0
            while offset + 4 <= raw.count {
                guard let cr = memchr(base + offset, 13, raw.count - offset) else { return nil }
                let at = base.distance(to: UnsafeRawPointer(cr))
                if at + 4 <= raw.count && raw[at + 1] == 10 && raw[at + 2] == 13 && raw[at + 3] == 10 { return at + 4 }
                offset = at + 1
            }
            return nil
        }
    }

    static func connect(_ target: Target, timeout: Double) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var info: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(target.host, String(target.port), &hints, &info) == 0, let first = info else {
            throw Failure(description: "cannot resolve '\(target.host)'")
        }
        defer { freeaddrinfo(info) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { throw Failure(description: "socket() failed") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        guard Glibc.connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "cannot connect to \(target.key) (\(reason))")
        }
        return fd
    }

    /// One request and response on `fd`; the connection goes back to the pool when reusable.
    static func exchange(_ fd: Int32, _ target: Target, timeout: Double) throws -> [UInt8] {
        let request = Array("GET \(target.path) HTTP/1.1\r\nHost: \(target.key)\r\nAccept: application/json\r\n\r\n".utf8)
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { close(fd); throw Failure(description: "sending to \(target.key) failed") }
            sent += n
        }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        var headEnd: Int?
        var contentLength: Int?
        var keepAlive = true
        var status = 0
        while true {
            if let end = headEnd, let length = contentLength, data.count >= end + length { break }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 {
                close(fd)
                if headEnd != nil && contentLength == nil { keepAlive = false; break }
                throw Failure(description: "\(target.key) closed the connection before answering")
            }
            data.append(contentsOf: buffer[0..<n])
            if headEnd == nil, let end = Self.headEnd(data) {
                headEnd = end
                let head = String(decoding: data[..<(end - 4)], as: UTF8.self).lowercased()
                let lines = head.split(separator: "\r\n")
                status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
                for line in lines.dropFirst() {
                    if line.hasPrefix("content-length:") { contentLength = Int(line.dropFirst(15).trimmingCharacters(in: .whitespaces)) }
                    if line.hasPrefix("connection:") && line.contains("close") { keepAlive = false }
                }
            }
        }
        let body = Array(data[headEnd!...].prefix(contentLength ?? Int.max))
        if keepAlive && contentLength != nil { pool.put(fd, target.key) } else if contentLength != nil { close(fd) }
        guard status == 200 else {
            throw Failure(description: "GET http://\(target.key)\(target.path) answered \(status): \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
        return body
    }
}
