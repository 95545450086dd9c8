// Test support shared by the runtime and host tests: an HTTP endpoint that answers from a script.
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A scripted HTTP server on 127.0.0.1: each request (counted over all connections) gets the
/// chunks `script` returns, sent one by one, and the connection is closed when asked.
public final class ScriptedServer: @unchecked Sendable {
    /// What one request gets.
    public struct Answer: Sendable {
        /// Sent one after the other, 2 ms apart (so a reader sees them split).
        public var chunks: [String]
        /// Close the connection after the chunks (with no chunks: close without answering).
        public var close: Bool
        /// Close with RST instead of FIN (implies `close`).
        public var reset: Bool

        /// An answer of `chunks`; the connection stays open for the next request unless `close`
        /// or `reset` says otherwise.
        public init(chunks: [String], close: Bool = false, reset: Bool = false) {
            self.chunks = chunks
            self.close = close || reset
            self.reset = reset
        }
    }

    /// The port it listens on.
    public let port: Int
    private let listener: Int32
    private let state = Mutex<(requests: Int, connections: Int)>((0, 0))
    private let script: @Sendable (Int) -> Answer

    /// Requests received so far, over all connections.
    public var requests: Int { state.withLock { $0.requests } }
    /// Connections accepted so far.
    public var connections: Int { state.withLock { $0.connections } }
    /// The head of every request received so far (request line and fields, as text), in order.
    public var heads: [String] { received.withLock { $0 } }
    private let received = Mutex<[String]>([])

    /// Listens at once; `script(i)` answers request i (counted from 0).
    public init(_ script: @escaping @Sendable (Int) -> Answer) throws {
        self.script = script
        (listener, port) = try Self.listen()
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    private static func listen() throws -> (Int32, Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, Glibc.listen(fd, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    deinit { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }

    private func acceptLoop() {
        while true {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            state.withLock { $0.connections += 1 }
            Thread { [self] in serve(fd) }.start()
        }
    }

    private func serve(_ fd: Int32) {
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { close(fd); return }
            pending += buffer[0..<n]
            while let end = Self.headEnd(pending) {
                let head = String(decoding: pending[0..<end], as: UTF8.self)
                received.withLock { $0.append(head) }
                pending.removeFirst(end)
                let index = state.withLock { state -> Int in
                    state.requests += 1
                    return state.requests - 1
                }
                let answer = script(index)
                for chunk in answer.chunks {
                    _ = Array(chunk.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    usleep(2000)
                }
                if answer.reset {
                    var linger = linger(l_onoff: 1, l_linger: 0)
                    setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
                }
                if answer.close { close(fd); return }
            }
        }
    }

    /// Where the first "\r\n\r\n" ends.
    private static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i + 4
        }
        return nil
    }
}

/// A complete 200 response with a JSON body (and `extra` header lines, each ending in CRLF).
public func ok(_ body: String, extra: String = "") -> String {
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\(extra)Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
}
