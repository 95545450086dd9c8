import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// How a draining host ends when its requests do not, and what a new instance does when the old
/// one's state does not come or is not its own: it never hangs and never takes a wrong state.
/// Sends `host` (the `slow` service) a request it takes `ms` milliseconds to answer, and gives it
/// 150 ms to start; returns the request's socket.
func startSlowRequest(_ host: HostProcess, ms: Int) throws -> Int32 {
    let fd = try host.client.connect()
    let body = temperature
    try host.client.send(fd, Array("POST / HTTP/1.1\r\nConnection: close\r\nDyninka-Args: ms: \(ms)\r\nDyninka-Route: \r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8))
    usleep(150_000)
    return fd
}

@Suite(.serialized) struct DrainAndStateTests {
    @Test func aSecondSignalEndsTheDrainAtOnce() throws {
        let slow = try HostProcess(service: "slow")
        let fd = try startSlowRequest(slow, ms: 5000)
        defer { close(fd) }
        slow.signal(SIGTERM)
        usleep(200_000)
        #expect(slow.process.isRunning, "the first signal waits for the request in flight")
        let second = Date()
        slow.signal(SIGTERM)
        #expect(slow.waitForExit(timeout: 3) == 0)
        #expect(Date().timeIntervalSince(second) < 1.5)
        let log = slow.standardError()
        #expect(log.contains("second signal: exiting without waiting for 1 request(s)"), "\(log)")
    }

    @Test func theDrainTimeoutBoundsTheWait() throws {
        let slow = try HostProcess(service: "slow", arguments: ["--drain-timeout", "300"])
        let fd = try startSlowRequest(slow, ms: 5000)
        defer { close(fd) }
        let signalled = Date()
        slow.signal(SIGTERM)
        #expect(slow.waitForExit(timeout: 3) == 0)
        let waited = Date().timeIntervalSince(signalled)
        #expect(waited > 0.25 && waited < 1.5, "\(waited)")
        let log = slow.standardError()
        #expect(log.contains("drain timeout: exiting with 1 request(s) in flight"), "\(log)")
    }

    @Test func heldRequestsStartFreshWhenNoStateComes() throws {
        let state = NSTemporaryDirectory() + "dyninka-nostate-\(getpid()).state"
        unlink(state)
        let host = try HostProcess(service: "movingAvg", arguments: ["--state-in", state, "--state-wait", "300"])
        let started = Date()
        let response = try host.client.post(#"{"value":4}"#)
        let waited = Date().timeIntervalSince(started)
        #expect(response.status == 200 && response.json()?["count"] as? Int == 1, "\(response)")
        #expect(waited > 0.25 && waited < 3, "held until --state-wait, then served: \(waited)")
        #expect(try host.client.post(#"{"value":8}"#).json()?["count"] as? Int == 2)
        host.stop()
        let log = host.standardError()
        #expect(log.contains("starts with fresh state: fresh no-state: no state from the old instance within 300 ms"), "\(log)")
    }

    @Test(arguments: [
        ("dyninka-state 1 map \n{\"count\":7}", "starts with fresh state: fresh not-this-service: the state file"),
        ("{\"count\":7}", "has no header"),
    ])
    func aStateFileThatIsNotThisServicesIsNotTaken(content: String, logged: String) throws {
        let state = NSTemporaryDirectory() + "dyninka-wrongstate-\(getpid()).state"
        defer { unlink(state) }
        try content.write(toFile: state, atomically: true, encoding: .utf8)
        let host = try HostProcess(service: "movingAvg", arguments: ["--state-in", state, "--state-wait", "10000"])
        let started = Date()
        let response = try host.client.post(#"{"value":4}"#)
        // Read at once (not after --state-wait), judged, and consumed; the host starts fresh.
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(response.status == 200 && response.json()?["count"] as? Int == 1, "\(response)")
        #expect(!FileManager.default.fileExists(atPath: state))
        host.stop()
        let log = host.standardError()
        #expect(log.contains(logged), "\(log)")
    }
}
