import DyninkaTestSupport
import Foundation
import Testing

/// Reads everything from `fd` until the peer closes, in pieces of `piece` bytes, pausing `pause`
/// microseconds between reads (a slow client).
private func readAll(_ fd: Int32, piece: Int = 65536, pause: UInt32 = 0, timeout: Double = 30) -> [UInt8] {
    var timeout = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: piece)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        data.append(contentsOf: buffer[0..<n])
        if pause > 0 { usleep(pause) }
    }
    return data
}

/// The body after the head of a raw response, and the head's text.
private func split(_ response: [UInt8]) -> (head: String, body: ArraySlice<UInt8>) {
    let marker: [UInt8] = Array("\r\n\r\n".utf8)
    guard let end = (0...max(0, response.count - 4)).first(where: { Array(response[$0..<$0 + 4]) == marker }) else {
        return (String(decoding: response, as: UTF8.self), [])
    }
    return (String(decoding: response[..<end], as: UTF8.self), response[(end + 4)...])
}

/// The cut-through relay: a next hop's response streams to the client as it arrives, is never
/// held whole, pauses while the client does not read, and is cut short (never replaced) when the
/// next hop fails after its head. Tests that take a `HostMode` run in process first; the others
/// need a process's memory, sockets or log.
@Suite(.serialized) struct RelayTests {
    @Test func aRelayedBodyStreamsWithoutBeingHeldWhole() throws {
        let cluster = try HostCluster(["blob", "hopB", "hopA"])
        let hopA = cluster["hopA"], hopB = cluster["hopB"]
        let request = #"{"size":8000000}"#
        let fd = try hopA.client.connect(receiveBuffer: 4096)
        defer { close(fd) }
        let before = (a: residentKiB(hopA.process.processIdentifier), b: residentKiB(hopB.process.processIdentifier))
        try hopA.client.send(fd, Array("POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: \(request.utf8.count)\r\n\r\n\(request)".utf8))
        // The client reads nothing for a while: every socket on the way fills, and the relaying
        // hosts must wait with at most a block or two each, not the 8 MB.
        usleep(800_000)
        let during = (a: residentKiB(hopA.process.processIdentifier), b: residentKiB(hopB.process.processIdentifier))
        let blocks = (a: try metric(hopA, "dyninka_read_blocks") ?? 0, b: try metric(hopB, "dyninka_read_blocks") ?? 0)
        let response = readAll(fd)
        let (head, body) = split(response)
        #expect(head.hasPrefix("HTTP/1.1 200"), "\(head)")
        #expect(head.contains("Content-Length: \(body.count)"), "\(head) with \(body.count) body bytes")
        #expect(body.count == 8_000_000)
        #expect(body.dropFirst(9).prefix(100).allSatisfy { $0 == UInt8(ascii: "x") })
        #expect(head.contains("Server-Timing: hopA;dur="), "\(head)")
        #expect(head.contains(", hopB;dur=") && head.contains(", blob;dur="), "\(head)")
        #expect(during.a - before.a < 4 * 1024, "hopA's RSS grew from \(before.a) to \(during.a) KiB")
        #expect(during.b - before.b < 4 * 1024, "hopB's RSS grew from \(before.b) to \(during.b) KiB")
        // The piece being written, the block being read into, a request body: a few, not 122.
        #expect(blocks.a <= 4 && blocks.b <= 4, "read blocks held: hopA \(blocks.a), hopB \(blocks.b)")
        #expect(try metric(hopA, "dyninka_buffered_bytes") == 0)
    }

    @Test func relayedBytesArriveIntactAndInOrderToASlowReader() throws {
        let last = try HostProcess(service: "echo")
        let first = try HostProcess(service: "echo", peers: ["echo": last.port])
        // 2.6 MB of distinct numbers: a lost, doubled or reordered piece changes the bytes.
        let json = "[" + (0..<400_000).map(String.init).joined(separator: ",") + "]"
        let fd = try first.client.connect(receiveBuffer: 8192)
        defer { close(fd) }
        try first.client.send(fd, Array("POST / HTTP/1.1\r\nConnection: close\r\nDyninka-Route: echo()\r\nContent-Length: \(json.utf8.count)\r\n\r\n\(json)".utf8))
        let (head, body) = split(readAll(fd, piece: 16384, pause: 500))
        #expect(head.hasPrefix("HTTP/1.1 200"), "\(head)")
        #expect(body.count == json.utf8.count)
        #expect(Array(body) == Array(json.utf8))
        // The connection stays usable for the next client, and nothing stays held.
        #expect(try first.client.post("[1,2,3]", route: "echo()").text == "[1,2,3]")
        #expect(try metric(first, "dyninka_buffered_bytes") == 0)
    }

    @Test(arguments: HostMode.allCases)
    func aRelayedAnswerArrivesIntactAndNothingStaysHeld(mode: HostMode) throws {
        let last = try HostProcess(service: "echo")
        let first = try mode.start("echo", peers: ["echo": last.port])
        // 2.6 MB of distinct numbers through a relay: a lost, doubled or reordered piece changes the bytes.
        let json = "[" + (0..<400_000).map(String.init).joined(separator: ",") + "]"
        let answer = try first.post(json, route: "echo()")
        #expect(answer.status == 200)
        #expect(answer.body == Array(json.utf8))
        #expect(answer.headers["server-timing"]?.contains(", echo;dur=") == true, "both hops named: \(answer.headers)")
        #expect(try first.post("[1,2,3]", route: "echo()").text == "[1,2,3]")
        #expect(try first.metric("dyninka_buffered_bytes") == 0)
        #expect(try first.metric("dyninka_in_flight_requests") == 0)
    }

    @Test func aNextHopThatFailsAfterItsHeadCutsTheResponseShort() throws {
        let piece = String(repeating: "y", count: 1000)
        let broken = try ScriptedServer { _ in
            .init(chunks: ["HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n\"" + piece], close: true)
        }
        let host = try HostProcess(service: "echo", peers: ["echo": broken.port], arguments: ["--log-level", "warning"])
        let fd = try host.client.connect()
        defer { close(fd) }
        try host.client.send(fd, Array("POST / HTTP/1.1\r\nDyninka-Route: echo()\r\nContent-Length: 2\r\n\r\n{}".utf8))
        let (head, body) = split(readAll(fd, timeout: 10))
        // The head went out with the first bytes; the rest never came: the client sees fewer
        // bytes than Content-Length said and the connection closed, never a made-up answer.
        #expect(head.hasPrefix("HTTP/1.1 200"), "\(head)")
        #expect(head.contains("Content-Length: 1000000"))
        #expect(body.count == 1001)
        #expect(try metric(host, "dyninka_hop_failures_total") == 1)
        #expect(try host.client.get("/healthz").status == 200)
        #expect(try metric(host, "dyninka_buffered_bytes") == 0)
        host.stop()
        let log = host.standardError()
        #expect(log.contains("service 'echo'") && log.contains("cut short after 1001 of 1000000 body bytes"), "\(log)")
    }

    @Test func aClientThatLeavesMidBodyStopsTheRelay() throws {
        let cluster = try HostCluster(["blob", "hopB"])
        let hopB = cluster["hopB"]
        for _ in 0..<5 {
            let fd = try hopB.client.connect()
            let request = #"{"size":20000000}"#
            try hopB.client.send(fd, Array("POST / HTTP/1.1\r\nContent-Length: \(request.utf8.count)\r\n\r\n\(request)".utf8))
            var buffer = [UInt8](repeating: 0, count: 4096)
            _ = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            // Gone with 20 MB still to come: RST, so the host sees it at once.
            var linger = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
            close(fd)
        }
        usleep(300_000)
        #expect(hopB.process.isRunning)
        #expect(try metric(hopB, "dyninka_in_flight_requests") == 0)
        #expect(try metric(hopB, "dyninka_buffered_bytes") == 0)
        #expect(try metric(hopB, "dyninka_read_blocks") ?? 99 <= 4)
        #expect(try hopB.client.post(#"{"size":100}"#, route: "blob()").status == 200)
    }
}
