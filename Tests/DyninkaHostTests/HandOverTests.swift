import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The hand-over of @Placed state from an old host to a new one on the same port (what a swap
/// and a move do): no client, slow or gone, can make it lose the state, leak a slot or stall it
/// past a bound the new side knows; and the new side says what it did.
@Suite(.serialized) struct HandOverTests {
    /// A state path of its own per test, and everything beside it removed afterwards.
    final class StatePath: Sendable {
        let path: String
        init(_ name: String) {
            path = NSTemporaryDirectory() + "dyninka-handover-\(name)-\(getpid()).state"
            clean()
        }
        func clean() { for suffix in ["", ".tmp", ".handover", ".result", ".handover.tmp", ".result.tmp"] { unlink(path + suffix) } }
        var result: String? { try? String(contentsOfFile: path + ".result", encoding: .utf8) }
        deinit { clean() }
    }

    /// Closes `fd` with a reset (SO_LINGER 0): the client is gone at once.
    static func reset(_ fd: Int32) {
        var linger = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }

    static func sendPost(_ client: RawHTTP, _ body: String) throws -> Int32 {
        let fd = try client.connect()
        try client.send(fd, Array("POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8))
        return fd
    }

    @Test func aClientThatLeavesDuringTheHoldGivesItsSlotBack() throws {
        let state = StatePath("leave")
        let host = try HostProcess(service: "movingAvg", arguments: ["--state-in", state.path, "--state-wait", "1500", "--max-in-flight", "4"])
        for _ in 0..<4 { Self.reset(try Self.sendPost(host.client, #"{"value":4}"#)) }
        usleep(200_000)
        // Held requests count against the limit, and a client that left gives its slot back.
        #expect(try metric(host, "dyninka_in_flight_requests") == 0)
        #expect(try metric(host, "dyninka_held_requests") == 0)
        let response = try host.client.post(#"{"value":4}"#)
        #expect(response.status == 200 && response.json()?["count"] as? Int == 1, "\(response)")
        #expect(try host.client.post(#"{"value":8}"#).status == 200, "no slot leaked: a later POST is served")
        #expect(try metric(host, "dyninka_in_flight_requests") == 0)
        host.signal(SIGTERM)
        #expect(host.waitForExit(timeout: 3) == 0, "the drain waits for no leaked slot")
    }

    @Test func heldRequestsAreBoundedByTheInFlightLimitAndPinNoReadBlock() throws {
        let state = StatePath("bound")
        let host = try HostProcess(service: "movingAvg", arguments: ["--state-in", state.path, "--state-wait", "20000", "--max-in-flight", "40"])
        var held: [Int32] = []
        defer { held.forEach { close($0) } }
        for _ in 0..<40 { held.append(try Self.sendPost(host.client, #"{"value":4}"#)) }
        usleep(300_000)
        #expect(try metric(host, "dyninka_held_requests") == 40)
        #expect(try metric(host, "dyninka_in_flight_requests") == 40)
        #expect(try metric(host, "dyninka_read_blocks") ?? 99 <= 4, "a held body is copied out of its read block")
        let refused = try host.client.post(#"{"value":4}"#)
        #expect(refused.status == 503 && refused.error?.kind == "overloaded", "the 41st is refused at once: \(refused)")
        // The old side's state comes: every held request runs, in order, on the restored state.
        try "dyninka-state 1 movingAvg fixture-moving-1\n{\"movingState\":{\"count\":10,\"average\":2}}".write(toFile: state.path, atomically: true, encoding: .utf8)
        var counts: [Int] = []
        for fd in held { counts.append(try host.client.readResponse(fd).json()?["count"] as? Int ?? -1) }
        #expect(counts == Array(11...50))
        #expect(state.result?.hasPrefix("restored 1 value(s)") == true, "\(state.result ?? "no result")")
        #expect(try metric(host, "dyninka_state_restored{outcome=\"restored\"}") == 1)
    }

    @Test func partialRequestsCannotMakeASwapDropTheState() throws {
        let state = StatePath("partial")
        // All defaults, as `dyninka run` starts hosts: 8 clients that send only a request line
        // stall the old side; its state must still reach the new one, within the hand-over bound.
        let old = try HostProcess(service: "movingAvg", arguments: ["--state-out", state.path])
        for value in [10, 20, 30] { #expect(try old.client.post(#"{"value":\#(value)}"#).status == 200) }
        var partial: [Int32] = []
        defer { partial.forEach { close($0) } }
        for _ in 0..<8 {
            let fd = try old.client.connect()
            try old.client.send(fd, Array("POST / HTTP/1.1\r\n".utf8))
            partial.append(fd)
        }
        let new = try HostProcess(service: "movingAvg", port: old.port, arguments: ["--state-in", state.path])
        old.signal(SIGUSR1)
        let asked = Date()
        // Once the old listener is closed (a connection caught in its handshake then would be
        // reset unless net.ipv4.tcp_migrate_req is 1, which `dyninka run` sets for a swap).
        usleep(100_000)
        let response = try new.client.post(#"{"value":40}"#)
        let held = Date().timeIntervalSince(asked)
        #expect(response.status == 200 && response.json()?["count"] as? Int == 4 && response.json()?["average"] as? Double == 25,
                "the fourth value on the old three: \(response)")
        #expect(held > 2.5 && held < 5, "held for the 3 s --handover-timeout, not the 10 s request timeout: \(held)")
        for fd in partial {
            let refused = try RawHTTP(port: old.port).readResponse(fd)
            #expect(refused.status == 503 && refused.error?.kind == "overloaded" && refused.headers["retry-after"] != nil, "\(refused)")
        }
        #expect(old.waitForExit(timeout: 5) == 0)
        #expect(state.result?.hasPrefix("restored 1 value(s)") == true, "\(state.result ?? "no result")")
    }

    @Test func aNextHopThatNeverAnswersDoesNotHoldTheState() throws {
        let state = StatePath("silent")
        let silent = try SilentListener()
        let old = try HostProcess(service: "movingAvg", peers: ["alert": silent.port], arguments: ["--state-out", state.path])
        #expect(try old.client.post(#"{"value":10}"#).status == 200)
        // Its call ran (count 2); its answer waits for a next hop that never answers.
        let stuck = try old.client.connect()
        defer { close(stuck) }
        try old.client.send(stuck, Array("POST / HTTP/1.1\r\nConnection: close\r\nDyninka-Route: alert(conditions: weather())\r\nContent-Length: 12\r\n\r\n{\"value\":20}".utf8))
        usleep(200_000)
        let new = try HostProcess(service: "movingAvg", port: old.port, arguments: ["--state-in", state.path])
        old.signal(SIGUSR1)
        let asked = Date()
        usleep(100_000)
        let response = try new.client.post(#"{"value":30}"#)
        #expect(response.json()?["count"] as? Int == 3 && response.json()?["average"] as? Double == 20, "\(response)")
        #expect(Date().timeIntervalSince(asked) < 1.5, "the state went as soon as no call ran")
        #expect(old.process.isRunning, "the old host still relays the stuck answer")
        old.signal(SIGTERM)
        _ = old.waitForExit(timeout: 3)
    }

    @Test func aServiceWithoutStateHandsOverAtOnce() throws {
        // `alert` waits for `weather` (its dependency), which never answers; alert has no
        // @Placed state, so nothing waits for that call: the (empty) state goes at once.
        let state = StatePath("waiting")
        let silent = try SilentListener()
        let old = try HostProcess(service: "alert", peers: ["weather": silent.port],
                                  arguments: ["--state-out", state.path, "--handover-timeout", "300"])
        let waiting = try old.client.connect()
        defer { close(waiting) }
        try old.client.send(waiting, Array("POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 15\r\n\r\n{\"average\":3.0}".utf8))
        usleep(200_000)
        old.signal(SIGUSR1)
        usleep(200_000)
        #expect(FileManager.default.fileExists(atPath: state.path), "a service without state hands over at once")
        #expect(old.process.isRunning, "and drains as usual, waiting for its request")
        old.signal(SIGKILL)
    }

    @Test func theNewSideWaitsAsLongAsTheOldSideAnnounces() throws {
        // The old side announces a bound longer than --state-wait: the new side must not give up
        // at --state-wait.
        let state = StatePath("announce")
        let host = try HostProcess(service: "movingAvg", arguments: ["--state-in", state.path, "--state-wait", "300"])
        try "dyninka-handover 1 movingAvg 1500\n".write(toFile: state.path + ".handover", atomically: true, encoding: .utf8)
        let writer = Thread {
            usleep(1_200_000)
            try? "dyninka-state 1 movingAvg fixture-moving-1\n{\"movingState\":{\"count\":5,\"average\":1}}"
                .write(toFile: state.path, atomically: true, encoding: .utf8)
        }
        writer.start()
        let response = try host.client.post(#"{"value":7}"#)
        #expect(response.json()?["count"] as? Int == 6, "\(response)")
        #expect(state.result?.hasPrefix("restored") == true, "\(state.result ?? "no result")")
    }

    @Test func aNewSideThatGetsNoStateSaysWhyInItsResultAndMetrics() throws {
        let state = StatePath("none")
        let host = try HostProcess(service: "movingAvg", arguments: ["--state-in", state.path, "--state-wait", "200"])
        #expect(try host.client.post(#"{"value":7}"#).json()?["count"] as? Int == 1)
        #expect(state.result?.hasPrefix("fresh no-state: no state from the old instance within 200 ms") == true, "\(state.result ?? "no result")")
        #expect(try metric(host, "dyninka_state_restored{outcome=\"no-state\"}") == 0)
    }
}

/// A listener that completes handshakes (the kernel does) and never reads or answers.
final class SilentListener {
    let fd: Int32
    let port: Int
    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound, listen(fd, 64) == 0 else { throw RawHTTPError.connect(errno) }
        port = Int(UInt16(bigEndian: address.sin_port))
    }
    deinit { close(fd) }
}
