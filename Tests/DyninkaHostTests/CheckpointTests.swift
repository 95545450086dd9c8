import DyninkaTestSupport
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A Redis server of its own on loopback (Debian's redis-server: scripts/bootstrap installs it),
/// without persistence, removed when the test ends.
final class RedisServer {
    let port: Int
    let process = Process()

    init() throws {
        port = PodHandOverTests.freePort()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        process.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        for _ in 0..<200 {
            if (try? command(["redis-cli", "-p", String(port), "ping"]))?.contains("PONG") == true { return }
            usleep(20_000)
        }
        throw HostProcessError.didNotStart("redis-server on port \(port) did not answer PING")
    }

    var url: String { "redis://127.0.0.1:\(port)/test" }

    func cli(_ arguments: String...) throws -> String {
        try command(["redis-cli", "-p", String(port)] + arguments).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(10_000) }
    }

    deinit { stop() }
}

/// The opt-in checkpoint of @Placed state: an instance killed outright (its node lost) is
/// replaced by one that starts from the store, with every acknowledged update (interval 0) or
/// all but those of the last interval; a store that is away fails the update's answer saying so.
@Suite(.serialized, .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server"), "needs redis-server (scripts/bootstrap installs it)"))
struct CheckpointTests {
    /// A movingAvg host keeping its checkpoint in `redis`, once ready (it has read the checkpoint).
    func host(_ redis: RedisServer, interval: Int = 0, extra: [String] = []) throws -> HostProcess {
        let host = try HostProcess(service: "movingAvg", arguments: ["--checkpoint", redis.url, "--checkpoint-interval", String(interval),
                                                                    "--log-level", "info"] + extra)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, (try? host.client.get("/readyz"))?.status != 200 { usleep(5_000) }
        return host
    }

    /// Posts from 4 clients for `seconds`; the statuses.
    func load(_ host: HostProcess, seconds: Double) -> [Int] {
        let answered = Mutex<[Int]>([])
        let stopped = Atomic<Bool>(false)
        var threads: [Thread] = []
        for _ in 0..<4 {
            let client = host.client
            let thread = Thread {
                while !stopped.load(ordering: .relaxed) {
                    let status = (try? client.post(#"{"value":10}"#))?.status ?? -1
                    answered.withLock { $0.append(status) }
                }
            }
            threads.append(thread)
            thread.start()
        }
        usleep(UInt32(seconds * 1_000_000))
        // Killed while the clients still post: the node is lost in the middle of the load.
        return answered.withLock { taken in
            stopped.store(true, ordering: .relaxed)
            return taken
        }
    }

    @Test func everyAcknowledgedUpdateSurvivesTheInstancesLoss() throws {
        let redis = try RedisServer()
        let first = try host(redis)
        #expect(try metric(first, "dyninka_state_restored{outcome=\"restored\"}") == 1, "nothing stored yet: the initial state")
        let statuses = load(first, seconds: 1.5)
        first.signal(SIGKILL)
        _ = first.waitForExit()
        usleep(200_000)
        let acknowledged = statuses.filter { $0 == 200 }.count
        #expect(acknowledged > 50 && statuses.allSatisfy { $0 == 200 || $0 == -1 }, "\(statuses.filter { $0 != 200 }.prefix(10))")
        // The replacement reads the store: every update a client was told about is there (those
        // cut off by the kill may be there too: applied and stored, never answered).
        let second = try host(redis)
        defer { second.stop() }
        let next = try second.client.post(#"{"value":10}"#)
        let count = next.json()?["count"] as? Int ?? -1
        let unanswered = statuses.count - acknowledged
        #expect(count >= acknowledged + 1 && count <= statuses.count + 4 + 1,
                "count \(count) after \(acknowledged) acknowledged updates (\(unanswered) cut off)")
        #expect(try metric(second, "dyninka_state_restored{outcome=\"restored\"}") == 1)
        #expect(try metric(second, "dyninka_state_restored_values") == 1)
        #expect(try metric(second, "dyninka_checkpoint_writes_total{outcome=\"stored\"}") ?? 0 >= 1)
        print("checkpoint, interval 0: \(acknowledged) updates acknowledged, the replacement counted \(count - 1) (\(unanswered) cut off by the kill)")
    }

    @Test func withAnIntervalAtMostTheLastIntervalIsLost() throws {
        let redis = try RedisServer()
        let first = try host(redis, interval: 200)
        let statuses = load(first, seconds: 1.5)
        first.signal(SIGKILL)
        _ = first.waitForExit()
        let acknowledged = statuses.filter { $0 == 200 }.count
        let second = try host(redis, interval: 200)
        defer { second.stop() }
        let count = (try second.client.post(#"{"value":10}"#).json()?["count"] as? Int ?? -1) - 1
        // The rate of updates times the interval (and a write): what may be missing.
        let perSecond = Double(acknowledged) / 1.5
        #expect(count > 0 && count <= statuses.count, "count \(count) after \(acknowledged) acknowledged")
        #expect(Double(acknowledged - count) <= perSecond * 0.5, "lost \(acknowledged - count) of \(acknowledged) at \(Int(perSecond))/s with a 200 ms interval")
        print("checkpoint, interval 200 ms: \(acknowledged) acknowledged, \(count) restored: \(acknowledged - count) lost at \(Int(perSecond)) updates/s")
    }

    @Test func aStoreThatIsAwayFailsTheUpdateSayingSoAndAReplacementStartsFreshSayingWhy() throws {
        let redis = try RedisServer()
        let first = try host(redis)
        defer { first.stop() }
        #expect(try first.client.post(#"{"value":10}"#).status == 200)
        redis.stop()
        let failed = try first.client.post(#"{"value":10}"#)
        #expect(failed.status == 500 && failed.text.contains("applied this update, but its checkpoint store") && failed.text.contains("movingAvg"),
                "\(failed.status) \(failed.text)")
        #expect(try metric(first, "dyninka_checkpoint_writes_total{outcome=\"failed\"}") ?? 0 >= 1)
        let second = try host(redis)
        defer { second.stop() }
        #expect(try metric(second, "dyninka_state_restored{outcome=\"no-state\"}") == 0)
        second.signal(SIGTERM)
        _ = second.waitForExit()
        let said = second.standardError()
        #expect(said.contains("movingAvg starts with fresh state") && said.contains("could not be read"), "\(said)")
    }

    @Test func aBadStoreAddressIsRefusedAtStart() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuildProducts.host)
        process.arguments = ["serve", "--app", BuildProducts.fixture, "--service", "movingAvg", "--port", "0",
                             "--checkpoint", "http://127.0.0.1:6379"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        let said = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus != 0 && said.contains("--checkpoint must be redis://HOST:PORT"), "\(said)")
    }
}
