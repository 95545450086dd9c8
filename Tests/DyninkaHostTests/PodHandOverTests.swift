import DyninkaTestSupport
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The hand-over of @Placed state over the network, as between the old and the new pod of a
/// stateful service: the new host asks the old one's control port (signed with the app key), the
/// old one relays what arrives from then on and answers with its state once no call runs; no
/// update is lost or doubled, and nobody without the key can pull or push state.
@Suite(.serialized) struct PodHandOverTests {
    static let keyFile: String = {
        let path = NSTemporaryDirectory() + "dyninka-pod-handover-\(getpid()).key"
        try? "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// The old instance: movingAvg on 127.0.0.1 with a control port; clients may post to it.
    func oldHost(control: Int) throws -> HostProcess {
        try HostProcess(service: "movingAvg", arguments: ["--control-port", String(control), "--app-key-file", Self.keyFile, "--public"])
    }

    /// The new instance on 127.0.0.2, asking `from` for the state.
    func newHost(from: String, extra: [String] = []) throws -> HostProcess {
        try HostProcess(name: "movingAvg", commandLine: [
            "serve", "--app", BuildProducts.fixture, "--service", "movingAvg", "--host", "127.0.0.2", "--port", "0", "--log-level", "info",
            "--app-key-file", Self.keyFile, "--public", "--handover-from", from, "--pod-ip", "127.0.0.2",
        ] + extra, addressPrefix: "127.0.0.2")
    }

    /// A fused unit's pods (`deploy --fuse auto`): the old host serves map and movingAvg in one
    /// process; the new one takes every member's state from it in the one answer.
    @Test func aFusedHostHandsEveryMembersStateOver() throws {
        let control = Self.freePort()
        let old = try HostProcess(service: "map,movingAvg", arguments: ["--control-port", String(control), "--app-key-file", Self.keyFile, "--public"])
        defer { old.stop() }
        for _ in 0..<5 { #expect(try old.client.post(#"{"value":10}"#, path: "/movingAvg").status == 200) }
        let new = try HostProcess(name: "map", commandLine: [
            "serve", "--app", BuildProducts.fixture, "--service", "map,movingAvg", "--host", "127.0.0.2", "--port", "0", "--log-level", "info",
            "--app-key-file", Self.keyFile, "--public", "--handover-from", "127.0.0.1:\(control)", "--pod-ip", "127.0.0.2",
        ], addressPrefix: "127.0.0.2")
        defer { new.stop() }
        #expect(waitReady(new.client) != nil, "the new fused host became ready once it had the state")
        let next = try new.client.post(#"{"value":10}"#, path: "/movingAvg")
        #expect(next.status == 200 && next.json()?["count"] as? Int == 6, "\(next.status) \(next.text)")
        #expect(try metric(new, "dyninka_state_restored{outcome=\"restored\"}") == 1)
        // A request that reaches the old host now is relayed to the new one.
        let relayed = try old.client.post(#"{"value":10}"#, path: "/movingAvg")
        #expect(relayed.status == 200 && relayed.json()?["count"] as? Int == 7, "\(relayed.status) \(relayed.text)")
    }

    /// Waits until `client` answers /readyz with 200; the milliseconds it took.
    func waitReady(_ client: RawHTTP, seconds: Double = 10) -> Double? {
        let started = Date()
        while Date().timeIntervalSince(started) < seconds {
            if (try? client.get("/readyz"))?.status == 200 { return Date().timeIntervalSince(started) * 1000 }
            usleep(5_000)
        }
        return nil
    }

    @Test func theStateGoesToTheSuccessorUnderLoadWithNoUpdateLostOrDoubled() throws {
        let control = Self.freePort()
        let old = try oldHost(control: control)
        defer { old.stop() }
        let answered = Mutex<[Int]>([])
        let stopped = Atomic<Bool>(false)
        let slowest = Mutex<Double>(0)
        var threads: [Thread] = []
        for _ in 0..<4 {
            let thread = Thread {
                while !stopped.load(ordering: .relaxed) {
                    let started = Date()
                    let status = (try? old.client.post(#"{"value":10}"#))?.status ?? -1
                    slowest.withLock { $0 = max($0, Date().timeIntervalSince(started)) }
                    answered.withLock { $0.append(status) }
                }
            }
            threads.append(thread)
            thread.start()
        }
        usleep(500_000)
        let new = try newHost(from: "127.0.0.1:\(control)")
        defer { new.stop() }
        let newClient = new.client
        let ready = waitReady(newClient)
        usleep(500_000)
        stopped.store(true, ordering: .relaxed)
        while threads.contains(where: { !$0.isFinished }) { usleep(5_000) }
        let statuses = answered.withLock { $0 }
        #expect(ready != nil, "the new host became ready once it had the state")
        #expect(statuses.count > 50 && statuses.allSatisfy { $0 == 200 }, "\(statuses.count) requests, not 200: \(statuses.filter { $0 != 200 }.prefix(10))")
        // Every acknowledged update counted exactly once, on the one state: the next count is N + 1.
        let next = try newClient.post(#"{"value":10}"#)
        #expect(next.status == 200)
        #expect(next.json()?["count"] as? Int == statuses.count + 1, "count \(next.json()?["count"] ?? "-") after \(statuses.count) acknowledged updates")
        // After the hand-over the old host relays: its answers name it, then the new host.
        let relayed = try old.client.post(#"{"value":10}"#)
        #expect(relayed.status == 200 && relayed.json()?["count"] as? Int == statuses.count + 2, "\(relayed)")
        #expect(relayed.headers["server-timing"].map { $0.components(separatedBy: "movingAvg;").count == 3 } == true, "\(relayed.headers)")
        #expect(try metric(new, "dyninka_state_restored{outcome=\"restored\"}") == 1)
        let slowestMs = slowest.withLock { $0 } * 1000
        print("pod hand-over: \(statuses.count) requests, ready after \(Int(ready ?? -1)) ms, slowest request \(Int(slowestMs)) ms")
    }

    @Test func aStoppingHostWaitsForItsSuccessorToAskAsADrainedPodDoes() throws {
        let control = Self.freePort()
        // A drain: the old host is told to stop before its replacement exists.
        let old = try HostProcess(service: "movingAvg", arguments: ["--control-port", String(control), "--app-key-file", Self.keyFile, "--public",
                                                                   "--drain-timeout", "20000", "--log-level", "info"])
        for _ in 0..<5 { #expect(try old.client.post(#"{"value":10}"#).status == 200) }
        old.signal(SIGTERM)
        usleep(1_000_000)
        #expect(old.process.isRunning, "it waits for a successor rather than exit with the state")
        let new = try newHost(from: "127.0.0.1:\(control)")
        defer { new.stop() }
        #expect(waitReady(new.client) != nil)
        let next = try new.client.post(#"{"value":10}"#)
        #expect(next.json()?["count"] as? Int == 6, "\(next)")
        #expect(old.waitForExit(timeout: 5) == 0, "once the state went, the old host exits")
        #expect(old.standardError().contains("waiting up to"), "\(old.standardError())")

        // Nobody comes: it stops at the drain's bound and says the state is lost.
        let control2 = Self.freePort()
        let lonely = try HostProcess(service: "movingAvg", arguments: ["--control-port", String(control2), "--app-key-file", Self.keyFile,
                                                                      "--public", "--drain-timeout", "800"])
        #expect(try lonely.client.post(#"{"value":10}"#).status == 200)
        lonely.signal(SIGTERM)
        #expect(lonely.waitForExit(timeout: 5) != nil)
        #expect(lonely.standardError().contains("no successor asked for the @Placed state of movingAvg"), "\(lonely.standardError())")
    }

    @Test func theFirstInstanceStartsAtOnceAndNoOneWithoutTheKeyGetsTheState() throws {
        // No other instance at the name: the initial state, at once.
        let alone = try newHost(from: "127.0.0.2:\(Self.freePort())")
        defer { alone.stop() }
        let ready = waitReady(alone.client, seconds: 3)
        #expect(ready != nil && ready! < 1000, "ready after \(ready ?? -1) ms")

        let control = Self.freePort()
        let old = try oldHost(control: control)
        defer { old.stop() }
        #expect(try old.client.post(#"{"value":10}"#).status == 200)
        let controlClient = RawHTTP(port: control)
        let unsigned = try controlClient.exchange(Array("POST /handover HTTP/1.1\r\nDyninka-Successor: 127.0.0.3:1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
        #expect(unsigned.status == 400, "\(unsigned)")
        let forged = try controlClient.exchange(Array("POST /handover HTTP/1.1\r\nDyninka-Successor: 127.0.0.3:1\r\nDyninka-Auth: v1 99999999999999 \(String(repeating: "ab", count: 32))\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
        #expect(forged.status == 403, "\(forged)")
        let data = try old.client.post("", path: "/handover")
        #expect(data.status == 404, "the data port has no hand-over: \(data)")
        // The state is where it was: the next update counts 2.
        #expect(try old.client.post(#"{"value":10}"#).json()?["count"] as? Int == 2)
    }

    @Test func withNoPredecessorAnsweringTheNewHostStartsFreshAndSaysWhy() throws {
        let control = Self.freePort()
        // 127.0.0.1 is listed, but nothing listens on the control port there.
        let new = try newHost(from: "127.0.0.1:\(control)", extra: ["--state-wait", "1000"])
        defer { new.stop() }
        let ready = waitReady(new.client, seconds: 5)
        #expect(ready != nil)
        #expect(try metric(new, "dyninka_state_restored{outcome=\"no-state\"}") == 0)
    }
}
