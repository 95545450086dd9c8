import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Overload, deadlines and restarts, with real processes.
@Suite(.serialized) struct ReliabilityTests {
    /// Sends a request on a new connection and returns the socket, unread.
    func open(_ client: RawHTTP, _ request: String) throws -> Int32 {
        let fd = try client.connect()
        try client.send(fd, Array(request.utf8))
        return fd
    }

    func slowRequest(ms: Int, extra: String = "") -> String {
        "POST / HTTP/1.1\r\nConnection: close\r\nDyninka-Route: \r\nDyninka-Args: ms: \(ms)\r\n\(extra)Content-Length: \(temperature.utf8.count)\r\n\r\n\(temperature)"
    }

    @Test func overloadIsAnswered503WithRetryAfterAndRelayed() throws {
        let slow = try HostProcess(service: "slow", arguments: ["--max-in-flight", "2"])
        let busy = try (0..<2).map { _ in try open(slow.client, slowRequest(ms: 600)) }
        usleep(100_000)
        let refused = try slow.client.exchange(Array(slowRequest(ms: 1).utf8))
        #expect(refused.status == 503)
        #expect(refused.headers["retry-after"] == "1")
        #expect(refused.error?.kind == "overloaded")
        #expect(refused.error?.service == "slow")
        // The caller relays the 503 and its Retry-After unchanged.
        let map = try HostProcess(service: "map", peers: ["slow": slow.port])
        let relayed = try map.client.post(#"{"sensor":"s","variable":"Temperature","value":30}"#, route: "slow(ms: 1)")
        #expect(relayed.status == 503)
        #expect(relayed.headers["retry-after"] == "1")
        #expect(relayed.error?.service == "slow")
        for fd in busy {
            #expect(try slow.client.readResponse(fd).status == 200, "the requests in flight still finish")
            close(fd)
        }
        #expect(try slow.client.exchange(Array(slowRequest(ms: 1).utf8)).status == 200)
    }

    @Test func aDeadlineStopsWorkThatCannotFinishInTime() throws {
        let cluster = try HostCluster(["slow", "map"])
        let started = Date()
        let late = try cluster["map"].client.post(temperature, route: "slow(ms: 2000)", extra: [("Dyninka-Deadline", "300")])
        #expect(late.status == 504, "\(late)")
        #expect(late.error?.kind == "timeout")
        #expect(late.error?.service == "slow")
        #expect(Date().timeIntervalSince(started) < 1.5)
        let spent = try cluster["map"].client.post(temperature, route: "slow(ms: 1)", extra: [("Dyninka-Deadline", "0")])
        #expect(spent.status == 504)
        #expect(spent.error?.service == "map")
        #expect(spent.error?.message.contains("deadline passed") == true)
        let enough = try cluster["map"].client.post(temperature, route: "slow(ms: 10)", extra: [("Dyninka-Deadline", "5000")])
        #expect(enough.status == 200)
        let bad = try cluster["map"].client.post(temperature, route: "", extra: [("Dyninka-Deadline", "soon")])
        #expect(bad.status == 400)
    }

    @Test func aRestartingNextHopIsWaitedForBrieflyThenNamed() throws {
        let port = freePort()
        let map = try HostProcess(service: "map", peers: ["movingAvg": port], arguments: ["--connect-retry", "2000"])
        // Nobody on the port: 502 naming movingAvg, after the retry window.
        let quick = try HostProcess(service: "map", peers: ["movingAvg": port], arguments: ["--connect-retry", "250"])
        let started = Date()
        let down = try quick.client.post(temperature, route: "movingAvg()")
        let waited = Date().timeIntervalSince(started)
        #expect(down.status == 502)
        #expect(down.error?.service == "movingAvg")
        #expect(waited >= 0.2 && waited < 1, "\(waited)")
        // A service that comes up within the window takes the request.
        let holder = HolderBox()
        let starter = Thread {
            usleep(300_000)
            holder.process = try? HostProcess(service: "movingAvg", port: port)
        }
        starter.start()
        let response = try map.client.post(temperature, route: "movingAvg()")
        #expect(response.status == 200, "\(response)")
        while starter.isExecuting { usleep(10_000) }
    }

    @Test func aReplacementCanBindThePortBeforeTheOldOneLeaves() throws {
        let old = try HostProcess(service: "movingAvg")
        let replacement = try HostProcess(service: "movingAvg", port: old.port)
        #expect(replacement.port == old.port)
        old.signal(SIGTERM)
        #expect(old.waitForExit() == 0)
        #expect(try replacement.client.post(#"{"value":4}"#).status == 200)
    }
}

extension ReliabilityTests {
    /// A hand-over (SIGUSR1 with --state-out) closes the listener at once, but a connection whose
    /// request is still on its way is served before the state is written: its caller saw it
    /// connected, and closing it would lose the request.
    @Test func aHandOverServesARequestStillOnItsWay() throws {
        let state = NSTemporaryDirectory() + "dyninka-handover-\(getpid()).state"
        defer { unlink(state) }
        let old = try HostProcess(service: "movingAvg", arguments: ["--state-out", state])
        let raw = old.client
        #expect(try raw.post(#"{"value":4}"#).status == 200)
        let body = #"{"value":8}"#
        let request = Array("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        let fd = try raw.connect()
        defer { close(fd) }
        try raw.send(fd, Array(request[..<20]))
        usleep(100_000)
        old.signal(SIGUSR1)
        usleep(300_000)
        #expect(old.process.isRunning, "the host waits for the request it has begun to receive")
        #expect(!FileManager.default.fileExists(atPath: state), "no state is written while a request may still update it")
        // New connections are no longer taken.
        #expect(throws: RawHTTPError.self) { _ = try raw.post(#"{"value":1}"#) }
        try raw.send(fd, Array(request[20...]))
        let answer = try raw.readResponse(fd)
        // Served by the old instance, after the first update: (4 + 8) / 2.
        #expect(answer.status == 200 && answer.json()?["average"] as? Double == 6 && answer.json()?["count"] as? Int == 2, "\(answer)")
        #expect(old.waitForExit() == 0)
        let written = try String(contentsOfFile: state, encoding: .utf8)
        #expect(written.hasPrefix("dyninka-state 1 movingAvg "), "\(written)")
    }

    /// --free-bind: a moving service's new host listens on its address before the node has it.
    @Test func freeBindListensOnAnAddressTheMachineDoesNotHaveYet() throws {
        // 192.0.2.0/24 is TEST-NET-1 (documentation only): no machine has it. Nothing is sent there.
        let refused = try HostProcess.run(["serve", "--app", BuildProducts.fixture, "--service", "movingAvg", "--host", "192.0.2.7", "--port", "0"])
        #expect(refused.status != 0 && refused.errors.contains("cannot listen on 192.0.2.7"), "\(refused.errors)")
        let host = try HostProcess(name: "movingAvg", commandLine: ["serve", "--app", BuildProducts.fixture, "--service", "movingAvg",
                                                                   "--host", "192.0.2.7", "--port", "0", "--free-bind"],
                                   addressPrefix: "192.0.2.7")
        #expect(host.port > 0)
        host.stop()
    }
}

final class HolderBox: @unchecked Sendable {
    var process: HostProcess?
}
