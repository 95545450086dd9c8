import DyninkaLoop
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The opt-in checkpoint of @Placed state (`--checkpoint redis://HOST:PORT[/PREFIX]`): what
/// survives when the node of a stateful instance dies, which no hand-over can help with.
///
/// - After every call of a service with state (whatever its outcome: a function that threw may
///   have changed it), the state is dirty. Once no call runs, the loop snapshots every stateful
///   service of the host and a writer thread stores the snapshots in one `MSET` (each value is a
///   state file: header line and JSON, so a restore checks the declarations' hash as a hand-over
///   does). Writes never overlap; what changes during one goes into the next (group commit).
/// - `--checkpoint-interval 0` (the default): the answer of such a call waits until a write that
///   holds its update is stored, so no update a client was told about can be lost with the node.
///   If the store does not take it, the call answers 500 saying that its update was applied here
///   but is not safe (a client that retries would apply it twice).
/// - `--checkpoint-interval N`: answers at once; writes at most every N ms. Up to N ms of
///   updates (plus one write) may be lost with the node.
/// - At start, when no predecessor hands state over (none there, or none answered), the host
///   holds its requests and reads the checkpoint instead.
/// - A hand-over (files or pods) seals only when no write is pending, and then writes no more:
///   a late write of the old instance never overwrites a newer one of its successor.
struct CheckpointStore: Sendable, CustomStringConvertible {
    let host: String
    let port: Int
    let prefix: String

    /// Parses `redis://HOST:PORT[/PREFIX]` (PREFIX defaults to `dyninka`).
    init?(url: String) {
        guard url.hasPrefix("redis://") else { return nil }
        let rest = url.dropFirst("redis://".count)
        let authority = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(authority.count).drop { $0 == "/" }
        guard let address = PeerAddress(parsing: String(authority)), !address.host.isEmpty else { return nil }
        host = address.host
        port = address.port
        prefix = path.isEmpty ? "dyninka" : String(path)
        guard !prefix.contains(where: { $0 == " " || $0 == "\r" || $0 == "\n" }) else { return nil }
    }

    var description: String { "redis://\(host):\(port)/\(prefix)" }

    /// The key of a service's state: `PREFIX:APP:SERVICE`.
    func key(app: String, service: String) -> String { "\(prefix):\(app):\(service)" }

    /// One connection to the store, used by one thread at a time; blocking, with timeouts.
    final class Connection {
        let store: CheckpointStore
        let timeoutMilliseconds: Int
        private var fd: Int32 = -1

        init(store: CheckpointStore, timeoutMilliseconds: Int) {
            self.store = store
            self.timeoutMilliseconds = timeoutMilliseconds
        }

        deinit { if fd >= 0 { close(fd) } }

        /// Stores the pairs in one `MSET`. Returns why it failed, or nil.
        func set(_ pairs: [(key: String, value: [UInt8])]) -> String? {
            var command: [[UInt8]] = [Array("MSET".utf8)]
            for pair in pairs {
                command.append(Array(pair.key.utf8))
                command.append(pair.value)
            }
            switch exchange(command) {
            case .failure(let failure): return failure.description
            case .success(.simple(let text)) where text == "OK": return nil
            case .success(let reply): return "the store answered \(reply) to MSET"
            }
        }

        /// The values of `keys` (`MGET`), nil where a key is not there.
        func get(_ keys: [String]) -> Result<[[UInt8]?], BlockingFailure> {
            switch exchange([Array("MGET".utf8)] + keys.map { Array($0.utf8) }) {
            case .failure(let failure): return .failure(failure)
            case .success(.array(let values)) where values.count == keys.count: return .success(values)
            case .success(let reply): return .failure(BlockingFailure("the store answered \(reply) to MGET"))
            }
        }

        /// A RESP reply, as far as MSET and MGET need.
        enum Reply: CustomStringConvertible {
            case simple(String)
            case error(String)
            case array([[UInt8]?])
            case other(String)

            var description: String {
                switch self {
                case .simple(let text): "+\(text)"
                case .error(let text): "an error (\(text))"
                case .array(let values): "\(values.count) value(s)"
                case .other(let text): text
                }
            }
        }

        /// Sends one command and reads its reply; on any failure the connection is dropped (the
        /// next exchange connects again).
        private func exchange(_ command: [[UInt8]]) -> Result<Reply, BlockingFailure> {
            if fd < 0 {
                switch blockingConnect(host: store.host, port: store.port, timeoutMilliseconds: timeoutMilliseconds) {
                case .success(let connected): fd = connected
                case .failure(let failure): return .failure(BlockingFailure("\(store.host):\(store.port): \(failure)"))
                }
            }
            var request = Array("*\(command.count)\r\n".utf8)
            for part in command {
                request += Array("$\(part.count)\r\n".utf8)
                request += part
                request += [13, 10]
            }
            var sent = 0
            while sent < request.count {
                let n = request.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return drop("cannot write to \(store.host):\(store.port) (\(String(cString: strerror(errno))))") }
                sent += n
            }
            var reader = Reader(fd: fd)
            guard let reply = reader.reply() else {
                return drop(reader.failure ?? "no answer from \(store.host):\(store.port) within \(timeoutMilliseconds) ms")
            }
            if case .error(let text) = reply { return .failure(BlockingFailure("the store refused: \(text)")) }
            return .success(reply)
        }

        private func drop(_ why: String) -> Result<Reply, BlockingFailure> {
            if fd >= 0 { close(fd) }
            fd = -1
            return .failure(BlockingFailure(why))
        }
    }

    /// Reads one RESP reply from a blocking socket.
    struct Reader {
        let fd: Int32
        var buffer: [UInt8] = []
        var index = 0
        var failure: String?

        init(fd: Int32) { self.fd = fd }

        mutating func fill() -> Bool {
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else {
                failure = n == 0 ? "the store closed the connection" : nil
                return false
            }
            if index > 0 {
                buffer.removeFirst(index)
                index = 0
            }
            buffer += chunk[0..<n]
            return true
        }

        mutating func line() -> String? {
            while true {
                if let end = buffer[index...].firstIndex(of: 10), end > index, buffer[end - 1] == 13 {
                    defer { index = end + 1 }
                    return String(decoding: buffer[index..<end - 1], as: UTF8.self)
                }
                guard fill() else { return nil }
            }
        }

        mutating func bytes(_ count: Int) -> [UInt8]? {
            while buffer.count - index < count + 2 { guard fill() else { return nil } }
            defer { index += count + 2 }
            return Array(buffer[index..<index + count])
        }

        mutating func bulk(_ header: String) -> [UInt8]?? {
            guard header.first == "$", let length = Int(header.dropFirst()) else { return .none }
            if length < 0 { return .some(nil) }
            guard let value = bytes(length) else { return .none }
            return .some(value)
        }

        mutating func reply() -> Connection.Reply? {
            guard let header = line(), let kind = header.first else { return nil }
            switch kind {
            case "+": return .simple(String(header.dropFirst()))
            case "-": return .error(String(header.dropFirst()))
            case "*":
                guard let count = Int(header.dropFirst()) else { return nil }
                var values: [[UInt8]?] = []
                for _ in 0..<max(count, 0) {
                    guard let item = line(), let value = bulk(item) else { return nil }
                    values.append(value)
                }
                return .array(values)
            default:
                return .other(header)
            }
        }
    }
}

/// The loop's side of the checkpoint: when to snapshot, who waits for which write.
///
/// Not thread-safe: everything here runs on the loop's thread; the writer thread only stores
/// what it is given and reports back through the loop's wakeup.
final class Checkpointer {
    let store: CheckpointStore
    let app: String
    /// The stateful services of the host, with their keys.
    let services: [(descriptor: ServiceDescriptor, key: String)]
    /// 0: answers wait for the write holding their update.
    let interval: Int
    private unowned let context: HostContext
    private let writer: CheckpointWriter

    /// A call changed the state since the last snapshot.
    private(set) var dirty = false
    /// A write is under way.
    private(set) var writing = false
    /// A hand-over sealed the state: nothing more is written from here.
    private var stopped = false
    /// Answers waiting for the next snapshot's write, and for the write under way.
    private var waiting: [(Bool) -> Void] = []
    private var inFlight: [(Bool) -> Void] = []
    private var lastWrite: UInt64 = 0
    private var timer: LoopTimer?
    private var failuresInARow = 0
    /// What the last failed write said (for the answers it fails).
    private(set) var lastFailure = ""

    init(store: CheckpointStore, app: String, services: [ServiceDescriptor], interval: Int, context: HostContext) {
        self.store = store
        self.app = app
        self.services = services.map { ($0, store.key(app: app, service: $0.name)) }
        self.interval = interval
        self.context = context
        let wakeup = context.wakeup
        writer = CheckpointWriter(store: store, wakeup: wakeup)
    }

    /// Nothing to write and nothing being written: a hand-over may seal. A store that failed the
    /// last write is not waited for (the successor has the state, and writes it once it can).
    var idle: Bool { !writing && (!dirty || stopped || failuresInARow > 0) && waiting.isEmpty }

    /// A call of a stateful service ended. With `then` (interval 0), its answer waits for the
    /// write that holds its update; `then(false)` when the store did not take it.
    func changed(then: ((Bool) -> Void)?) {
        guard !stopped else {
            then?(true)
            return
        }
        dirty = true
        if let then { waiting.append(then) }
        flushIfDue()
    }

    /// Writes the state now if it changed, no call runs, no write is under way, and (with an
    /// interval) the last write is old enough; otherwise arms the timer for when it will be.
    func flushIfDue() {
        guard dirty, !writing, !stopped, context.callsRunning == 0 else { return }
        if interval > 0 {
            let due = lastWrite + UInt64(interval) * 1_000_000
            let now = EventLoop.nanoseconds()
            if now < due {
                if timer == nil {
                    timer = try? LoopTimer(loop: context.loop)
                    timer?.start(after: UInt64((due - now) / 1_000_000) + 1) { [unowned self] in
                        timer?.close()
                        timer = nil
                        flushIfDue()
                    }
                }
                return
            }
        }
        var pairs: [(key: String, value: [UInt8])] = []
        for (service, key) in services {
            do {
                let json = try service.snapshot()
                pairs.append((key, HandOver.stateFile(service: service.name, hash: service.stateHash, json: json)))
            } catch {
                context.log.error("checkpoint: cannot snapshot the state of \(service.name): \(error)")
            }
        }
        dirty = false
        writing = true
        swap(&inFlight, &waiting)
        lastWrite = EventLoop.nanoseconds()
        let started = lastWrite
        let bytes = pairs.reduce(0) { $0 + $1.value.count }
        writer.write(pairs) { [unowned self] failure in
            written(failure: failure, bytes: bytes, seconds: Double(EventLoop.nanoseconds() - started) / 1e9)
        }
    }

    /// On the loop: the writer's outcome.
    private func written(failure: String?, bytes: Int, seconds: Double) {
        writing = false
        context.metrics.checkpointWrites[failure == nil ? "stored" : "failed", default: 0] += 1
        context.metrics.checkpointSeconds += seconds
        context.metrics.checkpointBytes = bytes
        if let failure {
            lastFailure = failure
            failuresInARow += 1
            if failuresInARow == 1 || failuresInARow % 100 == 0 {
                context.log.error("checkpoint: \(store) did not take the state (\(failuresInARow) time(s) in a row): \(failure)")
            }
            // The state is still not stored: the next call (or the timer) writes it again.
            dirty = true
        } else {
            if failuresInARow > 0 { context.log.info("checkpoint: \(store) takes the state again") }
            failuresInARow = 0
        }
        var done: [(Bool) -> Void] = []
        swap(&done, &inFlight)
        for answer in done { answer(failure == nil) }
        // After a failure, only for answers still waiting (each failed write answers its own), or
        // at the next interval: never in a loop against a store that is away.
        if failure == nil || interval > 0 || !waiting.isEmpty { flushIfDue() }
        context.callsSettled?()
    }

    /// A hand-over sealed the state: stop writing (the successor writes from now on).
    func stop() {
        stopped = true
        timer?.close()
        timer = nil
        var done: [(Bool) -> Void] = []
        swap(&done, &waiting)
        for answer in done { answer(true) }
    }

    /// Reads the checkpoint of every stateful service, off the loop (at start).
    static func read(_ store: CheckpointStore, keys: [String], timeoutMilliseconds: Int) -> Result<[[UInt8]?], BlockingFailure> {
        CheckpointStore.Connection(store: store, timeoutMilliseconds: timeoutMilliseconds).get(keys)
    }
}

/// The thread that talks to the store: one write at a time, its outcome posted to the loop.
final class CheckpointWriter: @unchecked Sendable {
    private let connection: CheckpointStore.Connection
    private let wakeup: LoopWakeup
    private let condition = NSCondition()
    private var job: (pairs: [(key: String, value: [UInt8])], done: (String?) -> Void)?
    private var thread: Thread?

    init(store: CheckpointStore, wakeup: LoopWakeup) {
        connection = CheckpointStore.Connection(store: store, timeoutMilliseconds: 2_000)
        self.wakeup = wakeup
    }

    /// Stores `pairs`; `done` runs on the loop with the failure, or nil. One write at a time.
    func write(_ pairs: [(key: String, value: [UInt8])], done: @escaping (String?) -> Void) {
        condition.lock()
        job = (pairs, done)
        if thread == nil {
            let thread = Thread { self.run() }
            thread.name = "dyninka-checkpoint"
            self.thread = thread
            thread.start()
        }
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while job == nil { condition.wait() }
            let (pairs, done) = job!
            job = nil
            condition.unlock()
            let failure = connection.set(pairs)
            let box = Completion(done: done, failure: failure)
            wakeup.submit { box.done(box.failure) }
        }
    }

    /// The write's outcome, carried to the loop (where alone `done` runs).
    private struct Completion: @unchecked Sendable {
        let done: (String?) -> Void
        let failure: String?
    }
}

extension ServiceHost {
    /// Holds requests (and readiness) and restores every stateful service from the checkpoint,
    /// read on a thread of its own: at start when no predecessor hands state over (`reason` says
    /// why). A service with nothing stored yet starts with its initial state.
    func readCheckpoint(because reason: String) {
        guard let checkpoint = context.checkpoint else { return }
        if handOver.held == nil {
            handOver.held = []
            handOver.holdingSince = EventLoop.nanoseconds()
        }
        handOver.pending = configuration.services
        let store = checkpoint.store
        let keys = checkpoint.services.map(\.key)
        let wait = max(configuration.stateWait, 1_000)
        let wakeup = context.wakeup
        let host = LoopOwned(self)
        log.info("\(reason): reading the @Placed state from the checkpoint at \(store)")
        Thread {
            let result = Checkpointer.read(store, keys: keys, timeoutMilliseconds: wait)
            wakeup.submit { host.value.restoreCheckpoint(result, reason: reason) }
        }.start()
    }

    /// On the loop: what the checkpoint held.
    fileprivate func restoreCheckpoint(_ read: Result<[[UInt8]?], BlockingFailure>, reason: String) {
        guard let checkpoint = context.checkpoint else { return }
        switch read {
        case .success(let values):
            for ((service, _), value) in zip(checkpoint.services, values) {
                if let value {
                    restoreState(value, service: service.name, from: "the checkpoint at \(checkpoint.store)")
                } else {
                    handOver.pending.removeAll { $0 == service.name }
                    handOver.outcomes.append((service.name, HandOver.Outcome(
                        restored: true, values: 0, bytes: 0, code: "restored",
                        detail: "nothing in the checkpoint yet: the initial state", heldRequests: 0, heldMilliseconds: 0)))
                    log.info("the checkpoint at \(checkpoint.store) holds no state of \(service.name) yet: starting with the initial state")
                }
            }
        case .failure(let failure):
            for service in checkpoint.services where handOver.pending.contains(service.descriptor.name) {
                handOver.outcomes.append((service.descriptor.name, HandOver.Outcome(
                    restored: false, values: 0, bytes: 0, code: "no-state",
                    detail: "\(reason), and the checkpoint at \(checkpoint.store) could not be read: \(failure)", heldRequests: 0, heldMilliseconds: 0)))
            }
        }
        // Services of this host without state have nothing to wait for.
        handOver.pending.removeAll()
        finishHolding(resultsAt: nil)
    }
}
