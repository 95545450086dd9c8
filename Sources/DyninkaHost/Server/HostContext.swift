import DyninkaHTTP
import DyninkaLoop
#if canImport(Glibc)
import Glibc
#endif

/// What every request and connection of one host shares, on its loop: the configuration, log
/// and metrics, pools (parsers, the scratch head buffer), the deadlines the sweep enforces, the
/// bound on buffered bytes, the name cache, and the start of hops. Per-request objects hold this
/// context, never the server or the role.
///
/// Not thread-safe: everything here runs on the loop's thread.
final class HostContext {
    let configuration: HostConfiguration
    let loop: EventLoop
    let wakeup: LoopWakeup
    let log: Log
    let metrics: Metrics
    /// Trace context and spans (see Tracer).
    let tracer: Tracer
    /// The app's key (AppKey): hops of the app are signed with it; nil without one.
    let appKey: AppKey?
    /// The thread running the loop (set when serving starts).
    var loopThread = pthread_self()
    /// A head being written: filled and handed to a write in one go (the write copies what the
    /// kernel does not take at once), so no buffer is allocated per message.
    let scratch = ByteStore(capacity: 2048)
    /// The host is draining: answers close their connections, pooled connections are not kept.
    var draining = false
    /// Requests whose call has not started (waiting for dependencies) and calls running now (an
    /// async call that awaits): a hand-over writes the state when both are 0 (HandOver.swift).
    var callsWaiting = 0
    var callsRunning = 0
    /// The @Placed state went to a new instance: no call of the service may start here any more.
    var stateSealed = false
    /// Told when a call stops waiting or running (set during a hand-over).
    var callsSettled: (() -> Void)?
    /// The checkpoint of the @Placed state (`--checkpoint`), when one is kept.
    var checkpoint: Checkpointer?

    /// How hops connect: keep-alive-free, closed with RST, refused connections retried within
    /// --connect-retry (read once, not per hop).
    let hopOptions: ClientOptions
    /// --connect-timeout.
    let hopConnectTimeout: Int

    init(configuration: HostConfiguration, appName: String, log: Log, metrics: Metrics) throws(HostStartupError) {
        self.configuration = configuration
        tracer = Tracer(configuration: configuration, appName: appName, log: log)
        appKey = try AppKey.load(configuration)
        hopOptions = ClientOptions(keepAlive: false, resetOnClose: true, retryRefused: configuration.connectRetry)
        hopConnectTimeout = configuration.connectTimeout
        self.log = log
        self.metrics = metrics
        do {
            loop = try EventLoop()
            wakeup = try LoopWakeup(loop: loop)
        } catch {
            throw HostStartupError("cannot start the event loop: \(error)")
        }
    }

    // MARK: Fusion

    /// The services of this process other stages call in process (fusion), by name; empty for a
    /// host of one service.
    var localStages: [String: PointToPointResponder] = [:]

    /// Where this host listens (set once bound): a fan-in dependency on one of its own services
    /// is a hop to `/NAME` here when the peers give no other address.
    var ownAddress: PeerAddress?

    /// The stage of this process that serves `service`; nil when it lives elsewhere.
    @inline(__always)
    func localStage(_ service: String) -> PointToPointResponder? {
        localStages.isEmpty ? nil : localStages[service]
    }

    // MARK: Parsers

    /// Idle parsers, reused by connections and hops (a parser is five allocations).
    private var idleRequestParsers: [HTTPParser] = []
    private var idleResponseParsers: [HTTPParser] = []

    /// A parser for requests (`request` true) or responses, fresh or reused.
    func takeParser(request: Bool) -> HTTPParser {
        if request {
            return idleRequestParsers.popLast()
                ?? HTTPParser(kind: .request, maxHeaderBytes: configuration.maxHeaderBytes, maxBodyBytes: configuration.maxBodyBytes)
        }
        return idleResponseParsers.popLast()
            ?? HTTPParser(kind: .response, maxHeaderBytes: 64 * 1024, maxBodyBytes: configuration.maxBodyBytes)
    }

    /// Gives a parser back once its owner is done with it (never from inside its own callbacks).
    func returnParser(_ parser: HTTPParser) {
        parser.reset()
        if parser.kind == .request {
            if idleRequestParsers.count < 256 { idleRequestParsers.append(parser) }
        } else if idleResponseParsers.count < 256 {
            idleResponseParsers.append(parser)
        }
    }

    // MARK: Relays

    /// Idle relays (each with its own head buffer), reused by relayed answers.
    private var idleRelays: [Relay] = []

    /// A relay for a next hop's answer, fresh or reused.
    func takeRelay() -> Relay { idleRelays.popLast() ?? Relay() }

    /// Gives a relay back once neither its hop nor its client connection holds it.
    func returnRelay(_ relay: Relay) {
        relay.reset()
        if idleRelays.count < 256 { idleRelays.append(relay) }
    }

    // MARK: Deadlines

    /// Everything with a deadline: open client connections and hops in progress. Each member
    /// knows its index (`trackSlot`), so adding and removing cost no hashing.
    private(set) var tracked: [any Expiring] = []

    func track(_ item: any Expiring) {
        guard item.trackSlot < 0 else { return }
        item.trackSlot = tracked.count
        tracked.append(item)
    }

    func untrack(_ item: any Expiring) {
        let slot = item.trackSlot
        guard slot >= 0, slot < tracked.count, tracked[slot] === item else { return }
        let last = tracked.removeLast()
        if slot < tracked.count {
            tracked[slot] = last
            last.trackSlot = slot
        }
        item.trackSlot = -1
    }

    /// Expires whatever is past its deadline (the sweep timer calls this).
    func sweepDeadlines() {
        let now = EventLoop.nanoseconds()
        for item in tracked where item.deadline != 0 && item.deadline <= now {
            item.expire()
        }
    }

    // MARK: Buffered bytes

    /// Bytes of requests and responses held in memory now (bodies being received or waiting for
    /// their turn, responses the kernel has not taken); bounded by --max-buffered-bytes.
    var bufferedBytes = 0

    /// Counts `bytes` more against --max-buffered-bytes; false (and nothing counted) when they do not fit.
    func reserveBuffer(_ bytes: Int) -> Bool {
        guard bytes <= configuration.maxBufferedBytes - bufferedBytes else { return false }
        bufferedBytes += bytes
        return true
    }

    /// The message of a 503 for bytes that do not fit: what is held, the limit, what did not fit.
    func overloadMessage(_ what: String) -> String {
        "'\(configuration.service)' holds \(bufferedBytes) bytes of requests and responses (limit \(configuration.maxBufferedBytes), --max-buffered-bytes); \(what) does not fit now; retry after 1 s"
    }

    // MARK: Names and exchanges

    /// Addresses of peers given by name, resolved once per --name-ttl rather than per hop.
    private(set) lazy var names = NameCache(loop: loop, ttlMilliseconds: configuration.nameTTL)

    /// HTTP exchanges the app library makes on this loop (Fetch in async services).
    private(set) lazy var exchanges = ExchangeClient(context: self)

    // MARK: Hops

    /// Hops queued while the loop handles a burst of events; they start together after it.
    private var queuedHops: [HopClient] = []
    private var startingHops: [HopClient] = []
    /// Hops wait for the end of the loop iteration (set once the loop's phase hook runs).
    var batchesHops = false
    /// The app library asked (from the loop thread) to run its queued jobs.
    var jobsQueued = false
    /// Runs the app library's queued jobs (ABI 2); nil without a library that has jobs.
    var runJobs: (() -> Void)?

    /// Sends `body` to the target's service; names resolve only through the peers. With
    /// `relayTo`, the response streams to that connection (`HopOutcome.relaying`).
    /// With `trace`, the request carries `traceparent` naming that context's span as the parent.
    func sendHop(_ target: HopTarget, body: OwnedBytes, relayTo connection: InboundConnection? = nil, trace: TraceContext?,
                 extra: ((ByteStore) -> Void)? = nil, appHop: AppHop? = nil, responseTimeout: Int? = nil,
                 completion: @escaping (HopOutcome) -> Void) {
        guard let address = target.address ?? (localStage(target.service) != nil ? ownAddress : nil) else {
            metrics.hopFailures += 1
            return completion(.failed(ServiceFailure(
                service: target.service, kind: .unreachable,
                message: "no address for service '\(target.service)'; pass --peers \(target.service)=HOST:PORT or add it to the placement file")))
        }
        var extraHead: ByteStore?
        if let extra {
            extraHead = ByteStore(capacity: 160)
            extra(extraHead!)
        }
        let client = HopClient(context: self, target: target, address: address, extraHead: extraHead, trace: trace,
                               body: body, relayTo: connection, completion: completion)
        client.appHop = appHop
        if let responseTimeout { client.responseTimeout = max(1, min(responseTimeout, configuration.responseTimeout)) }
        if !batchesHops { return client.start() }
        queuedHops.append(client)
    }

    /// A hop of the app (from an invocation): the client's deadline, when there is one, goes on
    /// as `Dyninka-Deadline` (`deadline` ms left), and the hop is signed with the app key; both
    /// are written into the head as it is sent (no allocation per hop; HopTarget.writeHead).
    func sendAppHop(_ target: HopTarget, body: OwnedBytes, relayTo connection: InboundConnection? = nil, trace: TraceContext?,
                    deadline: Int?, completion: @escaping (HopOutcome) -> Void) {
        let appHop = deadline == nil && appKey == nil ? nil : AppHop(deadline: deadline, key: appKey)
        sendHop(target, body: body, relayTo: connection, trace: trace, appHop: appHop, responseTimeout: deadline, completion: completion)
    }

    /// Runs at the end of each loop iteration: starts the hops and the library's jobs queued while
    /// the loop handled this iteration's events. Under load, a burst of requests then reaches the
    /// next hop together (one wake-up of that process) rather than one by one.
    func startQueued() {
        while !queuedHops.isEmpty || jobsQueued {
            if jobsQueued {
                jobsQueued = false
                runJobs?()
            }
            swap(&queuedHops, &startingHops)
            for hop in startingHops { hop.start() }
            startingHops.removeAll(keepingCapacity: true)
        }
    }

    /// Seconds since `started` (monotonic nanoseconds), for the metrics.
    func seconds(since started: UInt64) -> Double { Double(EventLoop.nanoseconds() - started) / 1e9 }
}
