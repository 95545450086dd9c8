internal import DyninkaHTTP
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A small HTTP/1.1 GET client for services that read from an endpoint (a sensor feed, a
/// config service): plain `http://`, keep-alive connections reused per host. Much cheaper than
/// URLSession on Linux (which goes through libcurl), and the same code works when the app runs
/// as a local program.
///
/// Two forms of each call:
/// - `try await Fetch.json(...)` (in async services): under dyninka-host the exchange runs on
///   the host's event loop and the service's task waits without holding a thread; the loop
///   serves other requests meanwhile. In a local program it is the blocking exchange.
/// - `try Fetch.json(...)` (synchronous): blocks the calling thread for the exchange. In a
///   synchronous service that thread is the host's loop: use it only for fast loopback endpoints.
public enum Fetch {
    /// A GET that did not produce a 200 with a body.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        /// What failed: the URL and the status, the connection error or the decoding error.
        public var description: String
    }

    /// The largest response body a fetch reads (8 MiB); a larger one fails the fetch.
    public static let maxBodyBytes = 8 * 1024 * 1024

    /// GETs `url` and decodes its JSON body as `type`, blocking the calling thread.
    public static func json<T: Decodable>(_ type: T.Type, from url: String, timeout: Double = 5) throws -> T {
        try get(url, timeout: timeout) { try decode(type, $0) }
    }

    /// GETs `url` and returns its body, blocking the calling thread.
    public static func bytes(from url: String, timeout: Double = 5) throws -> [UInt8] {
        try get(url, timeout: timeout) { Array($0) }
    }

    /// GETs `url` and decodes its JSON body as `type`; on the host's loop under dyninka-host.
    public static func json<T: Decodable>(_ type: T.Type, from url: String, timeout: Double = 5) async throws -> T {
        guard let loop = HostLoop.current else { return try get(url, timeout: timeout) { try decode(type, $0) } }
        return try await get(url, timeout: timeout, on: loop) { try decode(type, $0) }
    }

    /// GETs `url` and returns its body; on the host's loop under dyninka-host.
    public static func bytes(from url: String, timeout: Double = 5) async throws -> [UInt8] {
        guard let loop = HostLoop.current else { return try get(url, timeout: timeout) { Array($0) } }
        return try await get(url, timeout: timeout, on: loop) { Array($0) }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ body: UnsafeBufferPointer<UInt8>) throws -> T {
        do {
            return try FastJSON.decode(type, from: body)
        } catch is FastJSON.Unsupported {
            return try JSONDecoder().decode(type, from: Data(buffer: body))
        }
    }

    /// One GET through the host's `exchange`; `read` runs on the loop thread while the body is valid.
    static func get<R>(_ url: String, timeout: Double, on loop: HostLoop,
                                 _ read: @escaping (UnsafeBufferPointer<UInt8>) throws -> R) async throws -> R {
        let target = try targets.target(url)
        return try await withUnsafeThrowingContinuation { continuation in
            let exchange = LoopExchange(target: target) { status, body in
                guard status > 0 else {
                    return continuation.resume(throwing: Failure(description: "GET \(url): \(String(decoding: body, as: UTF8.self))"))
                }
                guard status == 200 else {
                    return continuation.resume(throwing: Failure(description: "GET \(url) answered \(status): \(String(decoding: body.prefix(200), as: UTF8.self))"))
                }
                // A value decoded just now, referenced from nowhere else: handing it to the
                // waiting task is safe even when its type is not Sendable.
                nonisolated(unsafe) let result = Result { try read(body) }
                continuation.resume(with: result)
            }
            loop.performLater { exchange.start(on: loop, timeout: timeout) }
        }
    }

    /// An exchange handed to the host: keeps the request bytes alive until the host is done with them.
    final class LoopExchange {
        private let wire: Wire
        private let port: Int32
        private let finish: (Int32, UnsafeBufferPointer<UInt8>) -> Void

        init(target: Target, finish: @escaping (Int32, UnsafeBufferPointer<UInt8>) -> Void) {
            wire = target.wire
            port = Int32(clamping: target.port)
            self.finish = finish
        }

        func start(on loop: HostLoop, timeout: Double) {
            loop.exchange(host: wire.host, port: port, request: UnsafeRawBufferPointer(wire.request), timeout: timeout,
                          context: Unmanaged.passRetained(self).toOpaque()) { context, status, data, length in
                let exchange = Unmanaged<LoopExchange>.fromOpaque(context!).takeRetainedValue()
                let body = UnsafeBufferPointer(start: data, count: length)
                guard let loop = HostLoop.current else { return exchange.finish(status, body) }
                loop.inCallback { exchange.finish(status, body) }
            }
        }
    }

    /// GETs `url` and hands the body to `read` (the bytes are valid only during the call).
    static func get<R>(_ url: String, timeout: Double, _ read: (UnsafeBufferPointer<UInt8>) throws -> R) throws -> R {
        let target = try targets.target(url)
        // A pooled connection may have been closed by the server meanwhile: retry once on a new one.
        if let fd = pool.take(target.key), quiet(fd) {
            var failed = false
            let result = try exchange(fd, target, timeout: timeout, reusedConnectionFailed: &failed, read)
            if !failed, let result { return result }
        }
        let fd = try connect(target, timeout: timeout)
        var failed = false
        guard let result = try exchange(fd, target, timeout: timeout, reusedConnectionFailed: &failed, read) else {
            throw Failure(description: "\(target.key) closed the connection before answering")
        }
        return result
    }

    struct Target: Sendable {
        var host: String
        var port: Int
        var path: String
        var key: String
        /// The whole GET request, built once.
        var request: [UInt8] = []
        /// The host name and the request as C memory, for the host's `exchange`: built once per
        /// URL, not per fetch.
        var wire: Wire

        init(_ url: String) throws {
            guard url.hasPrefix("http://") else { throw Failure(description: "only http:// URLs are supported, got '\(url)'") }
            // A control character or a space would end the request line early or add a header.
            guard !url.utf8.contains(where: { $0 <= 32 || $0 == 127 }) else {
                throw Failure(description: "the URL '\(url.debugDescription.dropFirst().dropLast())' contains a space or a control character (CR, LF, ...); percent-encode them")
            }
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
            key = "\(host):\(port)"
            request = HTTPWriter.requestHead(method: "GET", target: path, host: key, fields: [("Accept", "application/json")],
                                             contentLength: nil, keepAlive: true).array
            wire = Wire(host: host, request: request)
        }
    }

    /// C copies of a target's host name and request; immutable, freed with the last reference.
    final class Wire: @unchecked Sendable {
        // Written once in init, only read afterwards.
        let host: UnsafeMutablePointer<CChar>
        let request: UnsafeMutableRawBufferPointer

        init(host: String, request: [UInt8]) {
            self.host = strdup(host)
            let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: request.count, alignment: 1)
            request.withUnsafeBytes { bytes.copyMemory(from: $0) }
            self.request = bytes
        }

        deinit {
            free(host)
            request.deallocate()
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
    /// Returns nil (with `reusedConnectionFailed`) when nothing came back at all: a pooled
    /// connection the server had closed; the caller retries on a new one.
    static func exchange<R>(_ fd: Int32, _ target: Target, timeout: Double, reusedConnectionFailed: inout Bool,
                            _ read: (UnsafeBufferPointer<UInt8>) throws -> R) throws -> R? {
        let sent = target.request.withUnsafeBytes { request -> Bool in
            var offset = 0
            while offset < request.count {
                let n = send(fd, request.baseAddress! + offset, request.count - offset, Int32(MSG_NOSIGNAL))
                guard n > 0 else { return false }
                offset += n
            }
            return true
        }
        guard sent else {
            close(fd)
            reusedConnectionFailed = true
            return nil
        }
        // The answer goes through the same llhttp parser as the host's (DyninkaHTTP), fed as
        // it arrives: a body with Content-Length, chunked, or ending with the connection.
        let reader = HTTPMessage.Reader(.response, maxHeaderBytes: 64 * 1024, maxBodyBytes: maxBodyBytes)
        var buffer = [UInt8](repeating: 0, count: 16384)
        var received = false
        var open = true
        let response: HTTPMessage
        var reusable = false
        reading: while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                close(fd)
                throw Failure(description: "GET http://\(target.key)\(target.path) got no answer within \(timeout) s")
            }
            let parsed: HTTPMessage.Parsed
            if n <= 0 {
                close(fd)
                open = false
                if !received { reusedConnectionFailed = true; return nil }
                parsed = reader.finish()
            } else {
                received = true
                parsed = buffer.withUnsafeBytes { reader.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            }
            switch parsed {
            case .needMore:
                continue
            case .complete(let message, let trailing):
                response = message
                // Bytes beyond the response were never asked for: a connection carrying them is
                // not reused, or the next fetch would read them as its answer.
                reusable = n > 0 && message.keepAlive && trailing == 0
                break reading
            case .invalid(let error):
                if open { close(fd) }
                let what: String
                switch error {
                case .incomplete: what = "\(target.key) closed the connection before the answer was complete"
                case .headersTooLarge: what = "GET http://\(target.key)\(target.path): no complete response head in 64 KiB"
                case .bodyTooLarge: what = "GET http://\(target.key)\(target.path): the body is larger than \(maxBodyBytes) bytes"
                case .malformed(let reason): what = "GET http://\(target.key)\(target.path) answered with malformed HTTP: \(reason)"
                }
                throw Failure(description: what)
            }
        }
        if reusable { pool.put(fd, target.key) } else if open { close(fd) }
        guard response.status == 200 else {
            throw Failure(description: "GET http://\(target.key)\(target.path) answered \(response.status): \(String(decoding: response.body.prefix(200), as: UTF8.self))")
        }
        return try response.body.withUnsafeBufferPointer { try read($0) }
    }

    /// Whether an idle pooled connection has nothing to read: bytes (a stale answer sent after
    /// the last one) or the server's close make it unusable, and it is closed here.
    static func quiet(_ fd: Int32) -> Bool {
        var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        if poll(&ready, 1, 0) == 0 { return true }
        close(fd)
        return false
    }
}
