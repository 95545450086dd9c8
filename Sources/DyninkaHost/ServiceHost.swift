import DyninkaHTTP
import DyninkaLoop
import DyninkaRoute
#if canImport(Glibc)
import Glibc
#endif

/// What a host process does.
package enum HostRole: Sendable {
    /// Point to point: run the service, forward along the route, relay the answer.
    case service
    /// Gateway mode's function instance: run the service and answer; never forward. Explicit
    /// arguments come with the input in the body, split by the Dyninka-Parts header.
    case function
    /// Gateway mode's central gateway: proxy `/function/NAME` to the instance of NAME.
    case gateway(functions: PeerMap)
    /// Gateway mode's orchestrating function: run main's chain by calling each step through
    /// the gateway in turn (the paper's Listing 4).
    case orchestrator(gateway: PeerAddress)
}

/// A dyninka-host process serving one service of a table: listens, runs the function, forwards
/// along the route, answers health, readiness and metrics, and drains on SIGTERM / SIGINT.
/// The same server plays gateway mode's roles (see HostRole).
package final class ServiceHost {
    package let configuration: HostConfiguration
    package let role: HostRole
    /// The app's table; nil only for the gateway, which routes by name alone.
    package let table: ServiceTable!
    /// The service run here (for the orchestrator: main's entry service); nil for the gateway.
    let service: ServiceDescriptor!
    let loop: EventLoop
    /// A head being written: filled and handed to a write in one go (the write copies what the
    /// kernel does not take at once), so no buffer is allocated per message.
    let scratch = ByteStore(capacity: 2048)
    let wakeup: LoopWakeup
    let log: Log
    package let metrics = Metrics()
    private(set) var loopThread = pthread_self()
    private let checker: RouteChecker!
    private let parser = RouteParser()
    let defaultRoute: CheckedRoute!
    private var defaultPlan: RoutePlan!
    /// Arguments from main; a failure when main gives none (then a caller must send Dyninka-Args).
    private let defaultPlans: Result<[ArgumentPlan], RouteError>
    var defaultPlansResult: Result<[ArgumentPlan], RouteError> { defaultPlans }
    private(set) var defaultArguments: Result<[PreparedArgument], RouteError> = .success([])
    /// Prepared routes by header text: under load the same few routes repeat.
    private var routeCache: [String: Result<RoutePlan, RouteError>] = [:]
    private var argumentCache: [String: Result<(prepared: [PreparedArgument], visits: [String: Int]), RouteError>] = [:]
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

    /// "/NAME": the service's own path, built once rather than per request.
    private lazy var servicePath = "/\(configuration.service)"

    /// Addresses of peers given by name, resolved once per --name-ttl rather than per hop.
    private(set) lazy var names = NameCache(loop: loop, ttlMilliseconds: configuration.nameTTL)

    /// HTTP exchanges the app library makes on this loop (Fetch in async services).
    private(set) lazy var exchanges = ExchangeClient(host: self)
    /// What this host lends the app library (nil when it takes nothing); kept for the process's life.
    private var lender: LoopLender?
    /// Hops queued while the loop handles a burst of events; they start together after it.
    private var queuedHops: [HopClient] = []
    private var startingHops: [HopClient] = []
    /// The app library asked (from the loop thread) to run its queued jobs.
    private var jobsQueued = false
    private var phaseHook: LoopPhaseHook?

    /// Bytes of requests and responses held in memory now (bodies being received or waiting for
    /// their turn, responses the kernel has not taken); bounded by --max-buffered-bytes.
    var bufferedBytes = 0

    /// Counts `bytes` more against --max-buffered-bytes; false (and nothing counted) when they do not fit.
    func reserveBuffer(_ bytes: Int) -> Bool {
        guard bytes <= configuration.maxBufferedBytes - bufferedBytes else { return false }
        bufferedBytes += bytes
        return true
    }

    /// Gateway mode: one prepared target per function name.
    var gatewayTargets: [String: HopTarget] = [:]
    private var server: TCPHandle?
    private var sweepTimer: LoopTimer?
    private var signals: [SignalWatcher] = []
    /// Everything with a deadline: open client connections and hops in progress. Each member
    /// knows its index (`trackSlot`), so adding and removing cost no hashing.
    private var tracked: [any Expiring] = []
    /// The open client connections (a snapshot; closing one changes `tracked`).
    private var connections: [InboundConnection] { tracked.compactMap { $0 as? InboundConnection } }
    private(set) var draining = false
    private var exitTimer: LoopTimer?
    /// Services the default route calls that have no address (each such request answers 502).
    package private(set) var missingPeers: [String] = []
    /// The address actually bound (port resolved when 0 was asked for).
    package private(set) var boundAddress: String = ""

    /// Loads nothing itself: pass the table loaded from `configuration.appPath` (none for the gateway).
    package init(configuration: HostConfiguration, table: ServiceTable?, role: HostRole = .service) throws(HostStartupError) {
        self.configuration = configuration
        self.role = role
        self.table = table
        log = Log(service: configuration.service, level: configuration.logLevel)
        do {
            loop = try EventLoop()
            wakeup = try LoopWakeup(loop: loop)
        } catch {
            throw HostStartupError("cannot start the event loop: \(error)")
        }
        if case .gateway = role { metrics.openFaaSNames = true }
        guard let table else {
            if case .gateway = role {
                service = nil
                checker = nil
                defaultRoute = nil
                defaultPlans = .success([])
                return
            }
            throw HostStartupError("no app library: pass --app PATH")
        }
        var name = configuration.service
        if case .orchestrator = role { name = table.entryService }
        guard let service = table[name] else {
            throw HostStartupError("service '\(name)' is not in \(table.path); it has \(table.services.map(\.name).joined(separator: ", "))")
        }
        self.service = service
        checker = RouteChecker(table: table, maxHops: configuration.maxHops)
        do {
            // A function instance never forwards: its route is always empty.
            if case .function = role {
                defaultRoute = CheckedRoute(chain: RouteChain(calls: []), steps: [])
            } else {
                defaultRoute = try checker.check(service.defaultRoute, after: service)
            }
        } catch {
            throw HostStartupError("default route of '\(service.name)' is invalid: \(error)")
        }
        do {
            defaultPlans = .success(try checker.checkArguments(nil, of: service))
        } catch {
            defaultPlans = .failure(error)
        }
        defaultPlan = plan(defaultRoute)
        defaultArguments = defaultPlans.map(prepare)
        // Every service this one may forward to by default should have an address; say so now
        // rather than at the first request (a host may still be run alone, for a test or a custom route).
        if case .service = role {
            missingPeers = Self.servicesCalled(by: defaultRoute, plans: (try? defaultPlans.get()) ?? [])
                .filter { configuration.peers.address(of: $0) == nil }.sorted()
        }
    }

    private static func servicesCalled(by route: CheckedRoute, plans: [ArgumentPlan]) -> Set<String> {
        var names = Set<String>()
        func visit(_ plans: [ArgumentPlan]) {
            for case .chain(let chain, _) in plans { names.formUnion(servicesCalled(by: chain, plans: [])) }
        }
        visit(plans)
        for step in route.steps {
            names.insert(step.service.name)
            visit(step.arguments)
        }
        return names
    }

    /// Binds the listening socket; after this, `boundAddress` is known.
    package func bind() throws(HostStartupError) {
        let address: SocketAddress
        do { address = try SocketAddress(ip: configuration.host, port: configuration.port) } catch {
            throw HostStartupError("--host '\(configuration.host)' is not a numeric IP address (for example 127.0.0.1 or 0.0.0.0)")
        }
        do {
            server = try TCPHandle.listen(loop: loop, on: address, reusePort: true) { [unowned self] handle in accepted(handle) }
        } catch {
            let hint = error.isAddressInUse ? "; another process listens there (pick another --port, or 0 for any free port)" : ""
            throw HostStartupError("cannot listen on \(address): \(error.reason)\(hint)")
        }
        boundAddress = server?.localAddress?.description ?? address.description
    }

    /// Serves until SIGTERM or SIGINT has drained the host. Call `bind()` first.
    package func run() throws(HostStartupError) {
        if server == nil { try bind() }
        loopThread = pthread_self()
        do {
            for signal in [SIGTERM, SIGINT] {
                signals.append(try SignalWatcher(loop: loop, signal: signal) { [unowned self] number in
                    beginDrain(signal: number)
                })
            }
            let sweep = try LoopTimer(loop: loop)
            let parent = getppid()
            var ticks = 0
            sweep.start(after: 50, repeat: 50) { [unowned self] in
                sweepDeadlines()
                ticks += 1
                // Once a second: a supervisor that died (even by SIGKILL) must not leave us running.
                if configuration.exitWithParent, ticks % 20 == 0, getppid() != parent, !draining {
                    log.warning("parent process \(parent) is gone: draining and exiting")
                    beginDrain(signal: SIGTERM)
                }
            }
            sweepTimer = sweep
            phaseHook = try LoopPhaseHook(loop: loop) { [unowned self] in startQueued() }
        } catch {
            throw HostStartupError("cannot set up signals and timers: \(error)")
        }
        lendLoop()
        if !missingPeers.isEmpty {
            log.warning("no address for \(missingPeers.map { "'\($0)'" }.joined(separator: ", ")), which '\(service.name)' calls by default: such requests will get 502; pass --peers \(missingPeers.map { "\($0)=HOST:PORT" }.joined(separator: ",")) or --placement FILE")
        }
        switch role {
        case .service:
            log.info("serving '\(service.name)' of \(table.appName) on http://\(boundAddress) (route after it: \(defaultRoute.chain.isEmpty ? "none" : defaultRoute.chain.source))")
        case .function:
            log.info("function instance of '\(service.name)' (\(table.appName)) on http://\(boundAddress); it never forwards")
        case .gateway(let functions):
            log.info("gateway on http://\(boundAddress) for \(functions.addresses.keys.sorted().joined(separator: ", "))")
        case .orchestrator(let gateway):
            log.info("orchestrator of \(table.appName) on http://\(boundAddress), calling \(service.name)()\(defaultRoute.chain.isEmpty ? "" : "." + defaultRoute.chain.source) through the gateway at \(gateway)")
        }
        loop.run()
        wakeup.close()
        loop.close()
        log.info("stopped")
    }

    /// Lends the loop to the app library (ABI 2): async services then run on this thread, and
    /// their fetches go through `exchanges`. Called once, on the loop thread, before serving.
    private func lendLoop() {
        guard let table, lender == nil else { return }
        let lender = LoopLender(
            wake: { [unowned self] in
                // From the loop itself: after this burst of events, with no system call.
                if pthread_equal(pthread_self(), loopThread) != 0 && phaseHook != nil {
                    jobsQueued = true
                    return
                }
                let runJobs = table.runJobs
                wakeup.submit { runJobs?() }
            },
            exchange: { [unowned self] name, port, request, timeout, done in
                exchanges.start(host: name, port: port, request: request, timeout: timeout, done: done)
            })
        if table.lend(lender) { self.lender = lender }
    }

    // MARK: Connections

    private func accepted(_ handle: TCPHandle) {
        let connection = InboundConnection(host: self, handle: handle)
        metrics.connections += 1
        connection.start()
    }

    func connectionClosed(_ connection: InboundConnection) {
        metrics.connections -= 1
        if draining { checkDrained() }
    }

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

    private func sweepDeadlines() {
        let now = EventLoop.nanoseconds()
        for item in tracked where item.deadline != 0 && item.deadline <= now {
            item.expire()
        }
    }

    // MARK: Requests

    func dispatch(_ head: HTTPHead, body: OwnedBytes?, on connection: InboundConnection) {
        let started = EventLoop.nanoseconds()
        // Past the limit, answer at once (and cheaply) rather than queue or drop: callers relay
        // the 503 and its Retry-After. A request holds its slot until its response is written.
        if head.method == "POST" {
            guard metrics.inFlight < configuration.maxInFlight else {
                metrics.recordFailure(service: configuration.service, kind: .overloaded)
                metrics.record(service: configuration.service, status: 503, seconds: 0)
                return connection.send(ServiceFailure(
                    service: configuration.service, kind: .overloaded,
                    message: "'\(configuration.service)' has \(metrics.inFlight) requests in flight (limit \(configuration.maxInFlight)); retry after 1 s"),
                    timing: HopTiming(name: configuration.service, started: started))
            }
            connection.claimSlot()
        }
        let target = head.target
        // The path without a query, found on the UTF-8 bytes (Character iteration costs more).
        let path = target.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(target[..<$0]) } ?? target
        // The hop path first: one method and one path comparison.
        if case .service = role, head.method == "POST", path == servicePath || path == "/" {
            return invoke(head, body: body, on: connection, started: started)
        }
        // HEAD is answered like GET, without the body (the connection leaves it out).
        let method = head.method == "HEAD" ? "GET" : head.method
        switch (method, path) {
        case ("GET", "/healthz"):
            text(200, "ok\n", on: connection)
        case ("GET", "/readyz"):
            text(draining ? 503 : 200, draining ? "draining\n" : "ready\n", on: connection)
        case ("GET", "/metrics"):
            metrics.nameLookups = names.lookups
            metrics.bufferedBytes = bufferedBytes
            metrics.readBlocks = loop.blockCount
            text(200, metrics.render(), on: connection, type: "text/plain; version=0.0.4")
        case ("POST", _) where path.hasPrefix("/function/"):
            guard case .gateway(let functions) = role else { fallthrough }
            proxy(String(path.dropFirst("/function/".count)), functions: functions, head: head, body: body, on: connection, started: started)
        case ("POST", "/"), ("POST", servicePath):
            switch role {
            case .service, .function: invoke(head, body: body, on: connection, started: started)
            case .orchestrator(let gateway): orchestrate(body: body, gateway: gateway, on: connection, started: started)
            case .gateway: reject(ServiceFailure(service: configuration.service, kind: .badRoute,
                                                 message: "the gateway proxies POST /function/NAME", status: 404), on: connection)
            }
        case ("GET", "/") where service != nil:
            text(200, describe(), on: connection, type: "application/json")
        case (_, "/"), (_, servicePath):
            reject(ServiceFailure(service: configuration.service, kind: .badInput,
                                  message: "method \(head.method) is not allowed; POST the input as JSON", status: 405), on: connection)
        default:
            reject(ServiceFailure(service: configuration.service, kind: .badRoute,
                                  message: "no such path '\(path)'; POST / runs '\(configuration.service)', GET /healthz, /readyz, /metrics", status: 404),
                   on: connection)
        }
    }

    private func invoke(_ head: HTTPHead, body: OwnedBytes?, on connection: InboundConnection, started: UInt64) {
        // The client's budget, checked first: it applies to every role (a gateway passes it on).
        var deadline: UInt64?
        if head.has("dyninka-deadline") {
            switch Self.deadline(head.values(of: "dyninka-deadline"), from: started) {
            case .success(let value): deadline = value
            case .failure(let failure):
                metrics.recordFailure(service: service.name, kind: .badInput)
                metrics.record(service: service.name, status: 400, seconds: seconds(since: started))
                return connection.send(ServiceFailure(service: service.name, kind: .badInput, message: failure.message),
                               timing: HopTiming(name: service.name, started: started))
            }
        }
        let plan: RoutePlan
        let arguments: [PreparedArgument]
        do throws(RouteError) {
            if case .function = role {
                // A function instance answers; it never forwards, whatever the request says.
                plan = defaultPlan
                if let parts = head.value(of: "dyninka-parts") {
                    return invokeWithParts(parts, body: body, on: connection, started: started, deadline: deadline)
                }
                arguments = try defaultArguments.get()
            } else {
                let routeBytes = head.valueBytes(of: "dyninka-route")
                let argumentText = head.value(of: "dyninka-args")
                if let routeBytes { plan = try routePlan(routeBytes) } else { plan = defaultPlan }
                if let argumentText {
                    let custom = try preparedArguments(argumentText)
                    arguments = custom.prepared
                    try checkLimits(plan, arguments: custom.visits)
                } else {
                    arguments = try defaultArguments.get()
                    try plan.withDefaultArguments.get()
                }
                if configuration.fixedRoutes { try checkFixed(plan, arguments: argumentText) }
            }
        } catch {
            metrics.recordFailure(service: service.name, kind: .badRoute)
            metrics.record(service: service.name, status: 400, seconds: Double(EventLoop.nanoseconds() - started) / 1e9)
            log.debug("refused route: \(error.message)")
            return connection.send(ServiceFailure(service: service.name, kind: .badRoute, message: error.message),
                           timing: HopTiming(name: service.name, started: started))
        }
        let invocation = Invocation(host: self, connection: connection, plan: plan, arguments: arguments,
                                    input: body, started: started)
        invocation.deadline = deadline
        invocation.start()
    }

    /// The longest budget a Dyninka-Deadline may give (a day); longer ones are cut to it.
    static let longestDeadline = 86_400_000

    /// The deadline (monotonic nanoseconds) that Dyninka-Deadline values give for a request that
    /// arrived at `started`: exactly one field of ASCII digits (milliseconds left), spaces around
    /// it allowed; anything else is refused, budgets beyond a day are cut to a day.
    static func deadline(_ values: [String], from started: UInt64) -> Result<UInt64, RouteError> {
        guard values.count == 1 else {
            return .failure(RouteError("Dyninka-Deadline must be given once, got \(values.count) values"))
        }
        let text = values[0].utf8.drop { $0 == 32 || $0 == 9 }.reversed().drop { $0 == 32 || $0 == 9 }.reversed()
        guard !text.isEmpty, text.allSatisfy({ (48...57).contains($0) }) else {
            let shown = values[0].count > 40 ? values[0].prefix(40) + "..." : Substring(values[0])
            return .failure(RouteError("Dyninka-Deadline must be the milliseconds left as a whole number (for example 2000), got '\(shown)'"))
        }
        var milliseconds = 0
        for digit in text {
            milliseconds = milliseconds * 10 + Int(digit - 48)
            if milliseconds >= longestDeadline { milliseconds = longestDeadline; break }
        }
        return .success(started + UInt64(milliseconds) * 1_000_000)
    }

    /// A function instance's request whose body is the input followed by each argument, with
    /// their byte lengths in Dyninka-Parts ("120,45,30"): sliced, never parsed.
    private func invokeWithParts(_ text: String, body: OwnedBytes?, on connection: InboundConnection, started: UInt64,
                                 deadline: UInt64?) {
        let total = body?.count ?? 0
        guard let lengths = Self.parts(text, count: service.parameters.count + 1, total: total) else {
            metrics.recordFailure(service: service.name, kind: .badInput)
            metrics.record(service: service.name, status: 400, seconds: seconds(since: started))
            let shown = text.count > 80 ? text.prefix(80) + "..." : Substring(text)
            return connection.send(ServiceFailure(
                service: service.name, kind: .badInput,
                message: "Dyninka-Parts '\(shown)' must give \(service.parameters.count + 1) byte lengths (input, then each argument) adding up to the body's \(total) bytes"),
                timing: HopTiming(name: service.name, started: started))
        }
        var slices: [OwnedBytes] = []
        var offset = 0
        let bytes = body ?? .empty
        for length in lengths {
            slices.append(bytes[offset..<offset + length])
            offset += length
        }
        let invocation = Invocation(host: self, connection: connection, plan: defaultPlan, arguments: slices.dropFirst().map { .given($0) },
                                    input: slices[0], started: started)
        invocation.deadline = deadline
        invocation.start()
    }

    /// The byte lengths of a Dyninka-Parts value: exactly `count` whole numbers, each within the
    /// body, adding up to `total`; nil otherwise. The count is checked before anything is summed,
    /// and the sum can never overflow.
    static func parts(_ text: String, count: Int, total: Int) -> [Int]? {
        let items = text.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        guard items.count == count else { return nil }
        var lengths: [Int] = []
        lengths.reserveCapacity(count)
        var sum = 0
        for item in items {
            let digits = item.drop { $0 == 32 }.reversed().drop { $0 == 32 }
            guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ (48...57).contains($0) }) else { return nil }
            let length = digits.reversed().reduce(0) { $0 * 10 + Int($1 - 48) }
            sum += length
            guard length <= total, sum <= total else { return nil }
            lengths.append(length)
        }
        return sum == total ? lengths : nil
    }

    /// The next hop of `route` (which follows this service), prepared, with the services it
    /// visits counted (this one included) and checked together with main's arguments.
    private func plan(_ route: CheckedRoute) -> RoutePlan {
        var visits = [service.name: 1]
        Self.countVisits(route, into: &visits)
        let plan = RoutePlan(route: route, next: route.steps.first.map { target($0, rest: route.chain.rest) }, visits: visits)
        var defaults: [String: Int] = [:]
        if case .success(let plans) = defaultPlans { Self.countVisits(plans, into: &defaults) }
        do throws(RouteError) { try checkLimits(plan, arguments: defaults) } catch { plan.withDefaultArguments = .failure(error) }
        return plan
    }

    static func countVisits(_ route: CheckedRoute, into visits: inout [String: Int]) {
        for step in route.steps {
            visits[step.service.name, default: 0] += 1
            countVisits(step.arguments, into: &visits)
        }
    }

    static func countVisits(_ plans: [ArgumentPlan], into visits: inout [String: Int]) {
        for case .chain(let chain, _) in plans { countVisits(chain, into: &visits) }
    }

    /// The limits on one request: --max-hops service calls in all (route and arguments together)
    /// and --max-visits calls of any one service, this one included, so that no request holds
    /// more than a few of a host's in-flight slots.
    /// Nothing is copied or allocated: the plan knows its own counts, the arguments add theirs.
    private func checkLimits(_ plan: RoutePlan, arguments: [String: Int]) throws(RouteError) {
        var calls = plan.calls
        var most = plan.mostVisited
        for (name, count) in arguments {
            calls += count
            let total = (plan.visits[name] ?? 0) + count
            if total > most.count { most = (name, total) }
        }
        guard calls <= configuration.maxHops else {
            throw RouteError("the route and the arguments make \(calls) service calls together; the limit is \(configuration.maxHops) (--max-hops)")
        }
        if most.count > configuration.maxVisits {
            throw RouteError("the request would run '\(most.name)' \(most.count) times; a request may run a service at most \(configuration.maxVisits) times (--max-visits)")
        }
    }

    /// With --fixed-routes: only the route and arguments of main's dataflow (what this service's
    /// callers send) are accepted.
    private func checkFixed(_ plan: RoutePlan, arguments: String?) throws(RouteError) {
        guard plan === defaultPlan || plan.route.chain == defaultRoute.chain else {
            throw RouteError("'\(service.name)' takes only the route of main's dataflow ('\(defaultRoute.chain.source)'); custom routes are turned off here (--fixed-routes)")
        }
        if let arguments {
            let given = try parser.parseArguments(arguments)
            let main = service.parameters.compactMap { p in p.defaultArgument.map { RouteArgument(label: p.label, value: $0) } }
            guard given == main else {
                throw RouteError("'\(service.name)' takes only main's arguments; custom arguments are turned off here (--fixed-routes)")
            }
        }
    }

    private func target(_ step: CheckedStep, rest: RouteChain) -> HopTarget {
        HopTarget(service: step.service.name, address: configuration.peers.address(of: step.service.name),
                  route: rest.source, arguments: step.call.argumentsSource)
    }

    private func prepare(_ plans: [ArgumentPlan]) -> [PreparedArgument] {
        plans.map { plan in
            switch plan {
            case .constant(let json):
                let bytes = ByteStore(capacity: json.utf8.count)
                bytes.append(json)
                return .constant(bytes)
            case .chain(let chain, let optional):
                return .dependency(target(chain.steps[0], rest: chain.chain.rest), optional: optional)
            }
        }
    }

    /// The last Dyninka-Route value planned, as bytes, and its plan: most traffic repeats one
    /// route, and comparing bytes costs less than making a String of them and hashing it.
    private let lastRoute = ByteStore(capacity: 128)
    private var lastRoutePlan: RoutePlan?

    private func routePlan(_ bytes: UnsafeRawBufferPointer) throws(RouteError) -> RoutePlan {
        if let lastRoutePlan, bytes.count == lastRoute.count,
           bytes.count == 0 || memcmp(bytes.baseAddress!, lastRoute.base!, bytes.count) == 0 {
            return lastRoutePlan
        }
        let plan = try routePlan(String(decoding: bytes, as: UTF8.self))
        lastRoute.removeAll()
        lastRoute.append(bytes)
        lastRoutePlan = plan
        return plan
    }

    private func routePlan(_ text: String) throws(RouteError) -> RoutePlan {
        if let cached = routeCache[text] { return try cached.get() }
        let result: Result<RoutePlan, RouteError>
        do throws(RouteError) { result = .success(plan(try checker.check(try parser.parseChain(text), after: service))) } catch { result = .failure(error) }
        if routeCache.count >= 256 { routeCache.removeAll(keepingCapacity: true) }
        routeCache[text] = result
        return try result.get()
    }

    /// Dyninka-Args checked and prepared, with the services its dependencies visit.
    private func preparedArguments(_ text: String) throws(RouteError) -> (prepared: [PreparedArgument], visits: [String: Int]) {
        if let cached = argumentCache[text] { return try cached.get() }
        let result: Result<(prepared: [PreparedArgument], visits: [String: Int]), RouteError>
        do throws(RouteError) {
            let arguments = try parser.parseArguments(text)
            let hops = arguments.reduce(0) { total, arg in
                if case .chain(let chain) = arg.value { return total + chain.callCount }
                return total
            }
            guard hops <= configuration.maxHops else {
                throw RouteError("arguments make \(hops) service calls; the limit is \(configuration.maxHops) (--max-hops)")
            }
            let plans = try checker.checkArguments(arguments, of: service)
            var visits: [String: Int] = [:]
            Self.countVisits(plans, into: &visits)
            result = .success((prepare(plans), visits))
        } catch { result = .failure(error) }
        if argumentCache.count >= 256 { argumentCache.removeAll(keepingCapacity: true) }
        argumentCache[text] = result
        return try result.get()
    }

    private func text(_ status: Int, _ text: String, on connection: InboundConnection, type: String = "text/plain") {
        let body = ByteStore(capacity: text.utf8.count)
        body.append(text)
        connection.respond(status: status, body: body.owned) { head in
            head.append("Content-Type: ")
            head.append(type)
            head.append("\r\n")
        }
    }

    private func reject(_ failure: ServiceFailure, on connection: InboundConnection) {
        metrics.recordFailure(service: configuration.service, kind: failure.kind)
        connection.respond(failure: failure)
    }

    private func describe() -> String {
        let parameters = service.parameters.map { "{\"label\":\(JSONText.quote($0.label)),\"type\":\(JSONText.quote($0.type + ($0.optional ? "?" : "")))}" }
        return "{\"app\":\(JSONText.quote(table.appName)),\"service\":\(JSONText.quote(service.name)),"
            + "\"input\":\(service.inputType.map(JSONText.quote) ?? "null"),"
            + "\"output\":\(JSONText.quote(service.outputType + (service.outputOptional ? "?" : ""))),"
            + "\"parameters\":[\(parameters.joined(separator: ","))],"
            + "\"defaultRoute\":\(JSONText.quote(defaultRoute.chain.source))}\n"
    }

    // MARK: Hops

    /// Sends `body` to the target's service; names resolve only through the peers.
    func sendHop(_ target: HopTarget, body: OwnedBytes, relayTo connection: InboundConnection? = nil,
                 extra: ((ByteStore) -> Void)? = nil, responseTimeout: Int? = nil, completion: @escaping (HopOutcome) -> Void) {
        guard let address = target.address else {
            metrics.hopFailures += 1
            return completion(.failed(ServiceFailure(
                service: target.service, kind: .unreachable,
                message: "no address for service '\(target.service)'; pass --peers \(target.service)=HOST:PORT or add it to the placement file")))
        }
        var extraHead: ByteStore?
        if let extra {
            extraHead = ByteStore(capacity: 64)
            extra(extraHead!)
        }
        let client = HopClient(host: self, target: target, address: address, extraHead: extraHead,
                               body: body, relayTo: connection, completion: completion)
        if let responseTimeout { client.responseTimeout = max(1, min(responseTimeout, configuration.responseTimeout)) }
        if phaseHook == nil { return client.start() }
        queuedHops.append(client)
    }

    /// Runs at the end of each loop iteration: starts the hops and the library's jobs queued while
    /// the loop handled this iteration's events. Under load, a burst of requests then reaches the
    /// next hop together (one wake-up of that process) rather than one by one.
    private func startQueued() {
        while !queuedHops.isEmpty || jobsQueued {
            if jobsQueued {
                jobsQueued = false
                table.runJobs?()
            }
            swap(&queuedHops, &startingHops)
            for hop in startingHops { hop.start() }
            startingHops.removeAll(keepingCapacity: true)
        }
    }

    // MARK: Draining

    func invocationFinished() {
        if draining { checkDrained() }
    }

    private func beginDrain(signal: Int32) {
        if draining {
            log.warning("second signal: exiting without waiting for \(metrics.inFlight) request(s)")
            return shutdown()
        }
        draining = true
        log.info("signal \(signal): draining (readyz answers 503, \(metrics.inFlight) request(s) in flight)")
        let stopAccepting = { [unowned self] in
            server?.close()
            server = nil
            for connection in connections where connection.idle { connection.close() }
            checkDrained()
        }
        do {
            let timer = try LoopTimer(loop: loop)
            timer.start(after: UInt64(configuration.drainDelay + configuration.drainTimeout)) { [unowned self] in
                log.warning("drain timeout: exiting with \(metrics.inFlight) request(s) in flight")
                shutdown()
            }
            exitTimer = timer
            if configuration.drainDelay > 0 {
                let delay = try LoopTimer(loop: loop)
                delay.start(after: UInt64(configuration.drainDelay)) { delay.close(); stopAccepting() }
            } else {
                stopAccepting()
            }
        } catch {
            shutdown()
        }
    }

    private func checkDrained() {
        guard draining, server == nil, metrics.inFlight == 0 else { return }
        for connection in connections where !connection.busy { connection.close() }
        if metrics.connections == 0 { shutdown() }
    }

    private var stopped = false

    private func shutdown() {
        guard !stopped else { return }
        stopped = true
        server?.close()
        server = nil
        for connection in connections { connection.close() }
        if lender != nil { exchanges.closeIdle() }
        sweepTimer?.close()
        phaseHook?.close()
        exitTimer?.close()
        for signal in signals { signal.close() }
        signals.removeAll()
        loop.stop()
    }
}

/// A host that cannot start; the message says what to change.
package struct HostStartupError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}
