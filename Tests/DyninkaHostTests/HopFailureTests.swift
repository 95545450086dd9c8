import DyninkaTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Each way a next hop can fail reaches the client as the protocol's failure, naming that service
/// and saying what happened, and leaves the forwarding host as it was: healthy, nothing in
/// flight, no bytes held. The peer is a scripted endpoint standing where the next service should
/// be (the host forwards `echo()` to it). Each runs in process first, then as a real process.
@Suite(.serialized) struct HopFailureTests {
    /// Forwards one request to the peer at `port` and returns the client's answer.
    private func forward(_ mode: HostMode, to port: Int, arguments: [String] = []) throws -> (any TestHost, TestResponse) {
        let host = try mode.start("echo", peers: ["echo": port], flags: arguments)
        let response = try host.post(#"{"value":1}"#, route: "echo()")
        return (host, response)
    }

    /// The host is healthy and holds nothing once the failure is answered.
    private func expectSettled(_ host: any TestHost, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try host.get("/healthz").status == 200, sourceLocation: sourceLocation)
        #expect(try host.metric("dyninka_in_flight_requests") == 0, sourceLocation: sourceLocation)
        #expect(try host.metric("dyninka_buffered_bytes") == 0, sourceLocation: sourceLocation)
    }

    /// The answer is the protocol's failure of `kind`, naming the next service (echo), saying `message`.
    private func expectFailure(_ response: TestResponse, status: Int, kind: String, saying message: String,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(response.status == status, "\(response)", sourceLocation: sourceLocation)
        #expect(response.error?.service == "echo", sourceLocation: sourceLocation)
        #expect(response.error?.kind == kind, sourceLocation: sourceLocation)
        #expect(response.error?.message.contains(message) == true, "\(response)", sourceLocation: sourceLocation)
    }

    /// The peer takes the request, then resets (RST) or closes (FIN) without a byte of answer.
    @Test(arguments: HostMode.allCases, [(true, "reset the connection"), (false, "closed the connection without answering")])
    func aNextHopThatEndsWithoutAnsweringGives502(mode: HostMode, ending: (reset: Bool, message: String)) throws {
        let (reset, message) = ending
        let peer = try ScriptedServer { _ in .init(chunks: [], close: true, reset: reset) }
        let (host, response) = try forward(mode, to: peer.port)
        expectFailure(response, status: 502, kind: "unreachable", saying: "at 127.0.0.1:\(peer.port) \(message)")
        // Once the request went out, neither is a refusal: it is never sent again (the peer may
        // have run it).
        #expect(peer.requests == 1)
        try expectSettled(host)
    }

    @Test(arguments: HostMode.allCases)
    func aNextHopThatNeverAcceptsGives504AtTheConnectTimeout(mode: HostMode) throws {
        // A listener whose accept queue is full: the kernel drops further SYNs, so the host's
        // connection stays half open until its connect timeout.
        let (listener, port) = boundSocket()
        defer { close(listener) }
        #expect(listen(listener, 0) == 0)
        var fillers: [Int32] = []
        defer { fillers.forEach { close($0) } }
        for _ in 0..<3 { fillers.append(try RawHTTP(port: port).connect(waiting: false)) }
        usleep(50_000)
        let started = Date()
        let (host, response) = try forward(mode, to: port, arguments: ["--connect-timeout", "300", "--response-timeout", "5000"])
        let elapsed = Date().timeIntervalSince(started)
        expectFailure(response, status: 504, kind: "timeout", saying: "did not accept a connection within 300 ms")
        #expect(elapsed > 0.25 && elapsed < 2, "\(elapsed)")
        try expectSettled(host)
    }

    @Test(arguments: HostMode.allCases)
    func aGrowingAnswerBeyondTheHostsBytesGives503(mode: HostMode) throws {
        // A chunked answer has no declared length, so it is collected and counted as it grows:
        // past --max-buffered-bytes the host gives up on it instead of holding it.
        let chunk = String(repeating: "z", count: 256 * 1024)
        let piece = String(chunk.utf8.count, radix: 16) + "\r\n" + chunk + "\r\n"
        let peer = try ScriptedServer { _ in
            .init(chunks: ["HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"]
                  + Array(repeating: piece, count: 8) + ["0\r\n\r\n"], close: true)
        }
        let (host, response) = try forward(mode, to: peer.port, arguments: ["--max-buffered-bytes", String(1 << 20)])
        expectFailure(response, status: 503, kind: "overloaded", saying: "the answer of 'echo'")
        try expectSettled(host)
    }
}
