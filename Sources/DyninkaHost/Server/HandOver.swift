import DyninkaHTTP
import DyninkaLoop
#if canImport(Glibc)
import Glibc
#endif

/// The hand-over of a service's @Placed state from an old instance to a new one (a hot swap, a
/// move, an adapt move), through two files beside each other: `--state-out` on the old side,
/// `--state-in` on the new. A host serving several services (fusion) hands over one file per
/// service: the paths then hold `{service}`, so that a fused host can take over from separate
/// ones and separate ones from a fused host (an edge fused or split while the app serves).
///
/// The promise: no update a client was told about is lost, and no client can delay the hand-over
/// past a bound the new side knows.
///
/// - Old side, on SIGUSR1: it stops accepting, closes kept connections that wait between
///   requests, and announces how long it may take (`PATH.handover`: `--handover-timeout`, plus
///   `--response-timeout` for an async service, whose running call it must wait for). Requests
///   that arrive whole in that time run as usual. As soon as no request is partly received and
///   no call is waiting or running, it snapshots the state, writes it (PATH.tmp, renamed) and
///   *seals*: no call of the service runs on it any more. At the bound at the latest, partial
///   requests are refused (503 with Retry-After) and a request still waiting for a dependency
///   fails with 503 when its call would start. The answers of calls that ran before the seal
///   keep relaying after it; the process then drains and exits as usual.
/// - New side: holds every POST (each within `--max-in-flight`, its body copied out of the read
///   block) until the state comes. It waits `--state-wait` for the old side to start, and once
///   the announcement is there, the old side's own bound plus a margin: never less than the old
///   side may need. Then it restores the state (or starts fresh, saying why), writes the outcome
///   to `PATH.result` for whoever runs the swap, shows it in /metrics, and serves what it held
///   in arrival order, skipping requests whose clients have gone.
struct HandOver {
    /// Old side: SIGUSR1 came.
    var active = false
    /// Old side: the state is written; no call of the service may run here any more.
    var sealed = false
    /// Old side: the bound for partial requests has passed (they were refused), and the refusing
    /// is under way (no seal in the middle of it: the seal closes what is not busy).
    var partialsRefused = false
    var refusing = false
    /// Old side: the timers of the bound for partial requests and for a running call.
    var timers: [LoopTimer] = []
    /// New side: POSTs held until the state has come, in arrival order (nil once serving).
    var held: [HeldRequest]?
    /// New side: when holding started, and the poll timer.
    var holdingSince: UInt64 = 0
    var pollTimer: LoopTimer?
    /// New side: the latest moment to wait for the state (loop clock, ns); raised when the old
    /// side announces its bound.
    var waitUntil: UInt64 = 0
    var announced = false
    /// Old side, pod hand-over: where requests go once sealed, and the successor's control request
    /// that is answered with the state (PodHandOver.swift).
    var successor: PeerAddress?
    var controlConnection: InboundConnection?
    /// Old side: the hop targets of the relay to the successor, by path.
    var successorTargets: [String: HopTarget] = [:]
    /// Old side: stopping (SIGTERM) but waiting for a successor to pull the state (a drain).
    var waitingForPull = false
    /// New side: the services whose state has not come yet, and what came for the others.
    var pending: [String] = []
    var outcomes: [(service: String, outcome: Outcome)] = []

    mutating func closeTimers() {
        for timer in timers { timer.close() }
        timers.removeAll()
        pollTimer?.close()
        pollTimer = nil
    }

    /// A POST held for the state. Its body is its own copy: a held request never pins a 64 KiB
    /// read block of the loop.
    struct HeldRequest {
        var request: Request
        var connection: InboundConnection
    }

    /// What the new side made of the hand-over: shown in the log, /metrics and `PATH.result`.
    struct Outcome {
        /// The state was restored (false: the service started fresh).
        var restored: Bool
        /// Top-level values restored.
        var values: Int
        var bytes: Int
        /// A short, fixed word for /metrics: restored, declaration-changed, no-state, not-this-service, unreadable.
        var code: String
        /// The sentence for people.
        var detail: String
        var heldRequests: Int
        /// How long the first held request waited.
        var heldMilliseconds: Int

        /// The one line of `PATH.result` (and the log): "restored N value(s) (B bytes); held ..."
        /// or "fresh CODE: why; held ...".
        var line: String {
            restored
                ? "restored \(values) value(s) (\(bytes) bytes); held \(heldRequests) request(s), the longest \(heldMilliseconds) ms"
                : "fresh \(code): \(detail); held \(heldRequests) request(s), the longest \(heldMilliseconds) ms"
        }
    }

    /// A service's state as a state file holds it (a file, a checkpoint): the first line (format,
    /// service, hash of the state's declarations), then the JSON.
    static func stateFile(service: String, hash: String, json: [UInt8]) -> [UInt8] {
        Array("dyninka-state 1 \(service) \(hash)\n".utf8) + json
    }

    /// The announcement the old side writes on SIGUSR1: it will have written the state within
    /// `bound` milliseconds.
    static func announcement(service: String, bound: Int) -> String { "dyninka-handover 1 \(service) \(bound)\n" }

    /// How many members a JSON object has at its top level (the values of a state snapshot).
    static func topLevelMembers(_ json: [UInt8]) -> Int {
        var depth = 0, members = 0, inString = false, escaped = false, sawValue = false
        for byte in json {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                inString = true
                if depth == 1 { sawValue = true }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
            case UInt8(ascii: ","):
                if depth == 1 { members += 1 }
            default:
                break
            }
        }
        return sawValue ? members + 1 : 0
    }
}

// MARK: - Old side

extension ServiceHost {
    /// The services of this host, as the table describes them (the hand-over carries each).
    var stateServices: [ServiceDescriptor] { configuration.services.compactMap { table?[$0] } }

    /// The hand-over file of `service` at `path` (`{service}` replaced; a host of one service may
    /// give a plain path).
    func stateFile(_ path: String, _ service: String) -> String { path.replacing("{service}", with: service) }

    /// The old side's bound (ms): partial requests get `--handover-timeout`; a running call of an
    /// async service may take up to `--response-timeout` more (its fetches are bounded by it).
    var handOverBound: Int {
        configuration.handoverTimeout + (stateServices.contains { $0.isAsync } ? configuration.responseTimeout : 0)
    }

    /// SIGUSR1 (the listener is closed already): announce the bound, start its timers, and seal
    /// at once when nothing is partly received or running.
    func beginHandOver() throws {
        guard stateServices.contains(where: \.hasState), let path = configuration.stateOut else {
            // Nothing to lose: the new side gets its (empty) state at once; requests here drain.
            seal(reason: nil)
            return
        }
        for connection in connections where connection.betweenRequests { connection.close() }
        context.callsSettled = { [unowned self] in trySeal() }
        for service in configuration.services {
            writeFile(stateFile(path, service) + ".handover", Array(HandOver.announcement(service: service, bound: handOverBound).utf8))
        }
        let partials = try LoopTimer(loop: context.loop)
        partials.start(after: UInt64(configuration.handoverTimeout)) { [unowned self] in refusePartials() }
        handOver.timers.append(partials)
        let last = try LoopTimer(loop: context.loop)
        last.start(after: UInt64(handOverBound)) { [unowned self] in
            seal(reason: "\(context.callsRunning) call(s) of \(configuration.service) still running after \(handOverBound) ms")
        }
        handOver.timers.append(last)
        trySeal()
    }

    /// Connections whose request has not fully come.
    private var partialConnections: [InboundConnection] { connections.filter(\.partial) }

    /// Seals when nothing can still change the state: no partial request (each either came and
    /// ran, or was refused at the bound), no call waiting for its dependencies (unless the bound
    /// passed: those fail when their call would start) and no call running.
    func trySeal() {
        guard handOver.active, !handOver.sealed, !handOver.refusing, context.callsRunning == 0 else { return }
        // A checkpoint write under way (or due) goes first: once sealed, this instance writes no
        // more, so that no late write of it lands after one of its successor.
        if let checkpoint = context.checkpoint, !checkpoint.idle {
            checkpoint.flushIfDue()
            return
        }
        if handOver.successor != nil {
            // A pod hand-over relays what arrives from now on: only calls already started count.
            guard context.callsWaiting == 0 else { return }
        } else if !handOver.partialsRefused {
            guard context.callsWaiting == 0, !connections.contains(where: \.partial) else { return }
        }
        seal(reason: nil)
    }

    /// The bound for partial requests passed: each is refused, so its client can retry on the new
    /// instance; then the state is written unless a call still runs.
    private func refusePartials() {
        handOver.partialsRefused = true
        let partials = partialConnections
        if !partials.isEmpty {
            log.warning("hand-over: refusing \(partials.count) request(s) not received whole within \(configuration.handoverTimeout) ms (--handover-timeout), so that the state can go")
        }
        handOver.refusing = true
        for connection in partials {
            connection.refuseUnfinished(ServiceFailure(
                service: configuration.service, kind: .overloaded,
                message: "'\(configuration.service)' is handing over to a new instance and the request did not come whole within \(configuration.handoverTimeout) ms; retry"))
        }
        handOver.refusing = false
        trySeal()
    }

    /// Writes the state (when there is any) and seals: calls that would start from now on are
    /// refused. `reason`: why it happens before everything settled (logged as a warning).
    func seal(reason: String?) {
        guard !handOver.sealed else { return }
        handOver.sealed = true
        context.stateSealed = stateServices.contains(where: \.hasState)
        context.checkpoint?.stop()
        for timer in handOver.timers { timer.close() }
        handOver.timers.removeAll()
        if let reason, context.stateSealed {
            log.warning("hand-over: writing the state now although \(reason): those calls are answered 503, and their updates may be missing from the state")
        }
        if let connection = handOver.controlConnection {
            handOver.controlConnection = nil
            answerHandOver(on: connection)
        } else if let path = configuration.stateOut {
            writeState(to: path)
        }
        checkDrained()
    }

    /// A POST that came after the seal (only a request on a connection accepted before the
    /// hand-over whose call had not started): 503, so that the client retries on the new instance.
    func refuseAfterSeal(_ request: Request, on connection: InboundConnection) {
        connection.refuse(ServiceFailure(service: configuration.service, kind: .overloaded, message: HandOver.sealedMessage(configuration.service)),
                          counted: configuration.service, request: request, context: context)
    }

    /// What a hand-over gives of `service`: its snapshot, or `{}` when it has no state or the
    /// snapshot fails (logged: the new instance then starts fresh).
    func handedOverState(of service: ServiceDescriptor) -> [UInt8] {
        guard service.hasState else { return Array("{}".utf8) }
        do { return try service.snapshot() } catch {
            log.error("cannot snapshot the state of \(service.name): \(error); the new instance starts fresh")
            return Array("{}".utf8)
        }
    }

    /// Old side: no call runs, so the snapshot misses no update. Written to PATH.tmp and renamed,
    /// so the new side never reads half a file.
    func writeState(to path: String) {
        for service in stateServices {
            let file = stateFile(path, service.name)
            let bytes = HandOver.stateFile(service: service.name, hash: service.stateHash, json: handedOverState(of: service))
            if writeFile(file, bytes) {
                log.info("handed over: state of \(service.name) written (\(bytes.count) bytes); \(metrics.inFlight) answer(s) still to relay")
            }
            unlink(file + ".handover")
        }
    }

    /// Writes `bytes` to `path` through PATH.tmp and a rename; logs and returns false when it cannot.
    @discardableResult
    func writeFile(_ path: String, _ bytes: [UInt8]) -> Bool {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            log.error("cannot write \(temporary): \(String(cString: strerror(errno)))")
            return false
        }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == bytes.count, rename(temporary, path) == 0 else {
            log.error("cannot write \(path): \(String(cString: strerror(errno)))")
            return false
        }
        return true
    }
}

extension HandOver {
    /// The 503 of a call refused after the seal.
    static func sealedMessage(_ service: String) -> String {
        "'\(service)' handed its state over to a new instance before this call could run; retry"
    }
}

// MARK: - New side

extension ServiceHost {
    /// New side: holds POSTs until the state file appears (polled every 2 ms), then restores it
    /// and lets the held requests run, in arrival order.
    func awaitState(at path: String) throws {
        handOver.pending = configuration.services
        handOver.held = []
        handOver.holdingSince = EventLoop.nanoseconds()
        handOver.waitUntil = handOver.holdingSince + UInt64(configuration.stateWait) * 1_000_000
        let timer = try LoopTimer(loop: context.loop)
        handOver.pollTimer = timer
        timer.start(after: 2, repeat: 2) { [unowned self] in poll(path) }
    }

    private func poll(_ path: String) {
        for service in handOver.pending {
            let file = stateFile(path, service)
            if let bytes = readFile(file) {
                unlink(file)
                restoreState(bytes, service: service, from: "the state file \(file)")
            }
        }
        if handOver.pending.isEmpty { return finishHolding(resultsAt: path) }
        let now = EventLoop.nanoseconds()
        for service in handOver.pending where !handOver.announced {
            guard let announcement = readFile(stateFile(path, service) + ".handover") else { continue }
            handOver.announced = true
            let fields = String(decoding: announcement, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
            // The old side's bound, plus a second for it to write and for us to see the file.
            if fields.count >= 4, fields[0] == "dyninka-handover", let bound = Int(fields[3]), bound >= 0 {
                handOver.waitUntil = max(handOver.waitUntil, now + UInt64(bound + 1000) * 1_000_000)
                log.info("the old instance hands over within \(bound) ms: holding requests until its state comes")
            }
        }
        guard now >= handOver.waitUntil else { return }
        let waited = Int((now - handOver.holdingSince) / 1_000_000)
        let detail = handOver.announced
            ? "the old instance announced a hand-over but wrote no state within \(waited) ms (it may have been killed)"
            : "no state from the old instance within \(configuration.stateWait) ms (--state-wait); it never began a hand-over"
        for service in handOver.pending {
            handOver.outcomes.append((service, HandOver.Outcome(restored: false, values: 0, bytes: 0, code: "no-state", detail: detail,
                                                                heldRequests: 0, heldMilliseconds: 0)))
        }
        handOver.pending.removeAll()
        finishHolding(resultsAt: path)
    }

    /// The whole file at `path`; nil when it cannot be opened.
    func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return bytes
    }

    /// Restores `service` from its state as `source` (a file, a predecessor) gave it, or records
    /// why it starts fresh.
    func restoreState(_ bytes: [UInt8], service name: String, from source: String) {
        handOver.pending.removeAll { $0 == name }
        func record(_ outcome: HandOver.Outcome) { handOver.outcomes.append((name, outcome)) }
        func fresh(_ code: String, _ detail: String) -> HandOver.Outcome {
            HandOver.Outcome(restored: false, values: 0, bytes: 0, code: code, detail: detail, heldRequests: 0, heldMilliseconds: 0)
        }
        guard let newline = bytes.firstIndex(of: 10) else {
            return record(fresh("not-this-service", "\(source) has no header"))
        }
        let header = String(decoding: bytes[..<newline], as: UTF8.self).split(separator: " ").map(String.init)
        let json = Array(bytes[(newline + 1)...])
        guard header.count >= 3, header[0] == "dyninka-state", header[2] == name else {
            return record(fresh("not-this-service", "\(source) is not a state of \(name)"))
        }
        guard let service = table?[name], service.hasState else {
            return record(HandOver.Outcome(restored: true, values: 0, bytes: 0, code: "restored", detail: "no @Placed state",
                                           heldRequests: 0, heldMilliseconds: 0))
        }
        let theirs = header.count > 3 ? header[3] : ""
        guard theirs == service.stateHash else {
            return record(fresh("declaration-changed", "the @Placed state's declaration changed"))
        }
        do {
            try service.restore(json)
        } catch {
            return record(fresh("unreadable", "cannot restore the state: \(error)"))
        }
        record(HandOver.Outcome(restored: true, values: HandOver.topLevelMembers(json), bytes: json.count, code: "restored",
                                detail: "", heldRequests: 0, heldMilliseconds: 0))
    }

    /// Every service has its state (or its reason to start fresh): records each outcome (log,
    /// /metrics, and each service's PATH.result for a hand-over through files at `path`) and
    /// serves what was held.
    func finishHolding(resultsAt path: String?) {
        let held = handOver.held?.count ?? 0
        // The longest a request was held: the first held one's wait (0 when none came).
        let heldMilliseconds = handOver.held?.first.map { Int((EventLoop.nanoseconds() - $0.request.started) / 1_000_000) } ?? 0
        var all = HandOver.Outcome(restored: true, values: 0, bytes: 0, code: "restored", detail: "", heldRequests: held,
                                   heldMilliseconds: heldMilliseconds)
        for (service, partial) in handOver.outcomes {
            var outcome = partial
            outcome.heldRequests = held
            outcome.heldMilliseconds = heldMilliseconds
            if outcome.restored {
                log.info("took over the state of \(service): \(outcome.line)")
            } else {
                log.warning("\(service) starts with fresh state: \(outcome.line)")
            }
            if let path {
                let file = stateFile(path, service)
                unlink(file + ".handover")
                writeFile(file + ".result", Array((outcome.line + "\n").utf8))
            }
            all.values += outcome.values
            all.bytes += outcome.bytes
            if !outcome.restored, all.restored {
                all.restored = false
                all.code = outcome.code
            }
        }
        handOver.outcomes.removeAll()
        metrics.stateOutcome = (restored: all.restored, code: all.code, values: all.values, heldSeconds: Double(all.heldMilliseconds) / 1000)
        releaseHeld()
    }

    /// Holds a POST whose slot is claimed until the state comes: the body is copied out of the
    /// loop's read block, and the connection is watched so that a client that leaves frees its slot.
    func hold(_ request: Request, on connection: InboundConnection) {
        var copy: OwnedBytes?
        if let body = request.body {
            let store = ByteStore(capacity: max(body.count, 1))
            store.append(body.bytes)
            copy = store.owned
        }
        let held = Request(head: request.head, body: copy, path: request.path, started: request.started, trace: request.trace)
        handOver.held!.append(HandOver.HeldRequest(request: held, connection: connection))
        metrics.heldRequests = handOver.held!.count
        connection.watchWhileHeld()
    }

    /// A held request's client went away: its slot was given back with the connection.
    func forgetHeld(_ connection: InboundConnection) {
        handOver.held!.removeAll { $0.connection === connection }
        metrics.heldRequests = handOver.held!.count
    }

    private func releaseHeld() {
        handOver.pollTimer?.close()
        handOver.pollTimer = nil
        let requests = handOver.held ?? []
        handOver.held = nil
        metrics.heldRequests = 0
        for held in requests where !held.connection.isClosed { serve(held.request, on: held.connection) }
    }
}
