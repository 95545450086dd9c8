import Foundation
import Synchronization
import Testing
@testable import DyninkaRuntime
#if canImport(Glibc)
import Glibc
#endif

/// A scripted HTTP server on 127.0.0.1 for Fetch: each request (counted over all connections)
/// gets the chunks `script` returns, sent one by one, and the connection is closed when asked.
final class ScriptedServer: @unchecked Sendable {
    struct Answer {
        var chunks: [String]
        var close = false
    }

    let port: Int
    private let listener: Int32
    private let state = Mutex<(requests: Int, connections: Int)>((0, 0))
    private let script: @Sendable (Int) -> Answer

    var requests: Int { state.withLock { $0.requests } }
    var connections: Int { state.withLock { $0.connections } }

    init(_ script: @escaping @Sendable (Int) -> Answer) throws {
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
            while let end = Fetch.headEnd(pending.withUnsafeBufferPointer { $0 }) {
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
                if answer.close { close(fd); return }
            }
        }
    }
}

func ok(_ body: String, extra: String = "") -> String {
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\(extra)Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
}

@Suite struct FetchTests {
    struct Reading: Decodable, Equatable { var value: Double }

    @Test func keepAliveConnectionsAreReusedAndBodiesDecode() throws {
        let server = try ScriptedServer { i in .init(chunks: [ok(#"{"value":\#(i)}"#)]) }
        let url = "http://127.0.0.1:\(server.port)/next"
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 0))
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 1))
        #expect(try Fetch.bytes(from: url) == Array(#"{"value":2}"#.utf8))
        #expect(server.connections == 1)
    }

    @Test func responsesSplitAnywhereAreReassembled() throws {
        let whole = ok(#"{"value":21.5}"#, extra: "X-Long: \(String(repeating: "x", count: 5000))\r\n")
        let cut = whole.index(whole.startIndex, offsetBy: 17)
        let bodyStart = whole.range(of: "\r\n\r\n")!.upperBound
        let server = try ScriptedServer { _ in
            .init(chunks: [String(whole[..<cut]), String(whole[cut..<bodyStart]), String(whole[bodyStart...])])
        }
        #expect(try Fetch.json(Reading.self, from: "http://127.0.0.1:\(server.port)/") == Reading(value: 21.5))
    }

    @Test func closedAndBodyUntilCloseResponses() throws {
        let server = try ScriptedServer { i in
            i == 0 ? .init(chunks: [ok(#"{"value":1}"#, extra: "Connection: close\r\n")], close: true)
                   : .init(chunks: ["HTTP/1.1 200 OK\r\n\r\n{\"value\":2}"], close: true)
        }
        let url = "http://127.0.0.1:\(server.port)/"
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 1))
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 2))
        #expect(server.connections == 2)
    }

    @Test func aPooledConnectionTheServerClosedIsRetriedOnce() throws {
        // The first answer keeps the connection (no Connection: close) but the server closes it.
        let server = try ScriptedServer { i in .init(chunks: [ok(#"{"value":\#(i)}"#)], close: i == 0) }
        let url = "http://127.0.0.1:\(server.port)/"
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 0))
        usleep(20_000)
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 1))
        #expect(server.requests == 2, "one GET per call: the retry only happens when nothing came back")
    }

    @Test func failuresSayWhatHappened() throws {
        let server = try ScriptedServer { _ in .init(chunks: ["HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"]) }
        #expect {
            _ = try Fetch.json(Reading.self, from: "http://127.0.0.1:\(server.port)/next")
        } throws: { error in
            "\(error)".contains("answered 503: busy")
        }
        #expect { _ = try Fetch.bytes(from: "https://example.org/") } throws: { "\($0)".contains("only http://") }
        let silent = try ScriptedServer { _ in .init(chunks: []) }
        #expect {
            _ = try Fetch.bytes(from: "http://127.0.0.1:\(silent.port)/", timeout: 0.2)
        } throws: { error in
            "\(error)".contains("no answer within 0.2 s")
        }
    }
}
