import DyninkaLoop
import DyninkaTestSupport
import Foundation
import Testing
@testable import DyninkaHost

/// Host behaviour driven in this process through memory streams (no socket to the host, no
/// process): the request path, byte by byte, at the speed of a unit test.
@Suite(.serialized) struct InProcessTests {
    let post = "POST / HTTP/1.1\r\nHost: x\r\nDyninka-Route: \r\nContent-Length: \(temperature.utf8.count)\r\n\r\n\(temperature)"

    @Test func aRequestSplitAnywhereGetsTheSameAnswer() throws {
        let harness = try InProcessHost(service: "map")
        let whole = try #require(harness.exchange(post))
        #expect(whole.status == 200)
        #expect(whole.text == #"{"value":30}"#)
        let bytes = Array(post.utf8)
        for cut in 1..<bytes.count {
            let stream = harness.connect()
            stream.deliver(Array(bytes[..<cut]))
            stream.deliver(Array(bytes[cut...]))
            harness.run(until: { !stream.responses.isEmpty })
            let response = stream.responses.first
            #expect(response?.status == 200 && response?.body == whole.body, "cut at \(cut): \(String(describing: response))")
        }
        // And one byte per read.
        let stream = harness.connect()
        for byte in bytes { stream.deliver([byte]) }
        harness.run(until: { !stream.responses.isEmpty })
        #expect(stream.responses.first?.body == whole.body)
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let harness = try InProcessHost(service: "map")
        let other = #"{"sensor":"s","variable":"Temperature","value":12}"#
        let second = "POST / HTTP/1.1\r\nDyninka-Route: \r\nContent-Length: \(other.utf8.count)\r\n\r\n\(other)"
        let stream = harness.connect()
        stream.deliver(post + second + "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        harness.run(until: { stream.closed })
        let answers = stream.responses
        #expect(answers.map(\.status) == [200, 200, 200])
        #expect(answers.map(\.text) == [#"{"value":30}"#, #"{"value":12}"#, "ok\n"])
    }

    @Test func aResponseTheClientHasNotTakenHoldsItsSlot() throws {
        let harness = try InProcessHost(service: "map") { $0.maxInFlight = 1 }
        let slow = harness.connect()
        slow.holdWrites = true
        slow.deliver(post)
        harness.run(until: { !slow.responses.isEmpty })
        #expect(slow.responses.first?.status == 200)
        // Written, but not taken: the only slot is still held.
        let refused = try #require(harness.exchange(post))
        #expect(refused.status == 503)
        #expect(refused.headers["retry-after"] == "1")
        slow.completeWrites()
        #expect(harness.exchange(post)?.status == 200)
        #expect(harness.host.metrics.inFlight == 0)
    }

    @Test func aBodyInOneReadReachesTheFunctionWhereItArrived() throws {
        // map forwards to a next hop that answers a moment later: the request (and its body)
        // stays alive until then.
        let next = try ScriptedServer { _ in .init(chunks: [ok(#"{"count":1,"average":30}"#)]) }
        let port = next.port
        let harness = try InProcessHost(service: "map") {
            $0.peers = PeerMap(addresses: ["movingAvg": PeerAddress(host: "127.0.0.1", port: port)])
        }
        let loop = harness.host.eventLoop
        let request = "POST / HTTP/1.1\r\nContent-Length: \(temperature.utf8.count)\r\n\r\n\(temperature)"
        // In one read: the body stays in the read block it came in, so the loop must read the
        // next bytes into another block.
        let made = loop.blocksMade
        let one = harness.connect()
        one.deliver(request)
        _ = loop.blockForRead()
        #expect(loop.blocksMade == made + 1, "the body's block is held: the loop needed a new one")
        harness.run(until: { !one.responses.isEmpty })
        #expect(one.responses.first?.status == 200)
        // Split over two reads: the body is collected (copied) and no block is held.
        let twice = harness.connect()
        let bytes = Array(request.utf8)
        twice.deliver(Array(bytes[..<(bytes.count - 5)]))
        twice.deliver(Array(bytes[(bytes.count - 5)...]))
        let before = loop.blocksMade
        _ = loop.blockForRead()
        #expect(loop.blocksMade == before, "no block held by a collected body")
        harness.run(until: { !twice.responses.isEmpty })
        #expect(twice.responses.first?.status == 200)
    }

    @Test func aRelayedAnswerComesThroughAMemoryStream() throws {
        let piece = String(repeating: "z", count: 200_000)
        let next = try ScriptedServer { _ in
            .init(chunks: ["HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nServer-Timing: echo;dur=1\r\nContent-Length: \(piece.utf8.count + 2)\r\n\r\n\"",
                           piece + "\""], close: true)
        }
        let port = next.port
        let harness = try InProcessHost(service: "echo") { $0.peers = PeerMap(addresses: ["echo": PeerAddress(host: "127.0.0.1", port: port)]) }
        let stream = harness.connect()
        stream.deliver("POST / HTTP/1.1\r\nDyninka-Route: echo()\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
        harness.run(until: { stream.closed }, iterations: 20_000)
        let answer = try #require(stream.responses.first)
        #expect(answer.status == 200)
        #expect(answer.body.count == piece.utf8.count + 2)
        #expect(answer.headers["server-timing"]?.hasPrefix("echo;dur=") == true)
        #expect(answer.headers["server-timing"]?.hasSuffix(", echo;dur=1") == true, "\(answer.headers)")
        // The last piece ended the response and the connection: the close's FIN may go with it.
        #expect(stream.closingWrites == 1, "the last relayed piece is written as closing")
        #expect(stream.brokenPromises.isEmpty, "\(stream.brokenPromises)")
    }

    /// The bytes that end a response on a connection that closes after it are written as
    /// `closing` (on a socket, the FIN then leaves with them), and the close follows at once;
    /// never on a kept connection, and never when request bytes may still be unread (a close
    /// with unread bytes is a reset, which would drop the waiting response).
    @Test func theLastWriteBeforeACloseIsMarkedAndTheCloseFollows() throws {
        let harness = try InProcessHost(service: "map") { $0.maxBodyBytes = 64 }
        let closing = harness.connect()
        closing.deliver("POST / HTTP/1.1\r\nDyninka-Route: \r\nConnection: close\r\nContent-Length: \(temperature.utf8.count)\r\n\r\n\(temperature)")
        harness.run(until: { closing.closed })
        #expect(closing.responses.first?.status == 200)
        #expect(closing.closed && closing.closingWrites == 1 && closing.brokenPromises.isEmpty,
                "closed \(closing.closed), closing writes \(closing.closingWrites), \(closing.brokenPromises)")
        // Kept alive: nothing is marked, the connection stays.
        let kept = harness.connect()
        kept.deliver(post)
        harness.run(until: { !kept.responses.isEmpty })
        #expect(kept.responses.first?.status == 200)
        #expect(!kept.closed && kept.closingWrites == 0)
        kept.deliver(post.replacingOccurrences(of: "Host: x\r\n", with: "Host: x\r\nConnection: close\r\n"))
        harness.run(until: { kept.closed })
        #expect(kept.responses.count == 2 && kept.closingWrites == 1 && kept.brokenPromises.isEmpty)
        // Refused before its body was read (413): the close may reset, so nothing waits for it.
        let refused = harness.connect()
        refused.deliver("POST / HTTP/1.1\r\nDyninka-Route: \r\nConnection: close\r\nContent-Length: 100000\r\n\r\n{")
        harness.run(until: { refused.closed })
        #expect(refused.responses.first?.status == 413)
        #expect(refused.closingWrites == 0, "a response before the whole request is not written as closing")
        // A client that half-closes after its request still gets a closing answer.
        let halfClosed = harness.connect()
        halfClosed.deliver(post)
        halfClosed.deliverEnd()
        harness.run(until: { halfClosed.closed })
        #expect(halfClosed.responses.first?.status == 200)
        #expect(halfClosed.brokenPromises.isEmpty, "\(halfClosed.brokenPromises)")
    }
}
