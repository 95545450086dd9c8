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

/// A dyninka-host process: a small server that listens, tracks its connections, answers health,
/// readiness and metrics, drains on SIGTERM / SIGINT, and hands every other request to the one
/// responder its role installs (see HostRole and Roles/).
package final class ServiceHost {
    package let configuration: HostConfiguration
    package let role: HostRole
    /// The app's table; nil only for the gateway, which routes by name alone.
    package let table: ServiceTable?
    package let metrics = Metrics()
    /// What requests and connections share: loop, log, metrics, pools, deadlines, hops.
    let context: HostContext
    /// The role's answer to every request the server does not answer itself.
    private let responder: any Responder
    /// The app's service (every role but the gateway): its default route can be replaced.
    private var app: AppService?
    private var loop: EventLoop { context.loop }
    var log: Log { context.log }
    /// What this host lends the app library (nil when it takes nothing); kept for the process's life.
    private var lender: LoopLender?
    private var phaseHook: LoopPhaseHook?
    private var server: TCPHandle?
    /// `--also-listen`: more listeners, each with the path its `/` stands for.
    private var moreServers: [(handle: TCPHandle, root: String)] = []
    /// `--control-port`: the listener for a successor's hand-over request (PodHandOver.swift).
    private var controlServer: TCPHandle?
    /// The port actually bound (--port 0 picks one).
    private(set) var boundPort = 0
    private var sweepTimer: LoopTimer?
    private var signals: [SignalWatcher] = []
    /// The open client connections (a snapshot; closing one changes the tracked list).
    var connections: [InboundConnection] { context.tracked.compactMap { $0 as? InboundConnection } }
    private var draining: Bool { context.draining }
    private var exitTimer: LoopTimer?
    /// The address actually bound (port resolved when 0 was asked for).
    package private(set) var boundAddress: String = ""
    /// Hot swap and moves: the service whose @Placed state moves, and the hand-over under way
    /// (HandOver.swift).
    var handOver = HandOver()

    /// Loads nothing itself: pass the table loaded from `configuration.appPath` (none for the gateway).
    package init(configuration: HostConfiguration, table: ServiceTable?, role: HostRole = .service) throws(HostStartupError) {
        try Self.checkFused(configuration)
        self.configuration = configuration
        self.role = role
        self.table = table
        context = try HostContext(configuration: configuration, appName: table?.appName ?? "gateway",
                                  log: Log(service: configuration.service, level: configuration.logLevel), metrics: metrics)
        if case .gateway(let functions) = role {
            responder = GatewayResponder(context: context, functions: functions)
            return
        }
        guard let table else { throw HostStartupError("no app library: pass --app PATH") }
        switch role {
        case .service where configuration.services.count > 1:
            var stages: [PointToPointResponder] = []
            for name in configuration.services {
                stages.append(PointToPointResponder(context: context, app: try AppService(table: table, name: name, configuration: configuration,
                                                                                         forwards: true)))
            }
            for stage in stages { context.localStages[stage.app.service.name] = stage }
            responder = FusedResponder(stages: stages)
            app = stages[0].app
            if let path = configuration.routeFile, access(path, F_OK) == 0 {
                if let problem = reloadRoute(from: path) { log.warning("\(problem); serving the table's default route instead") }
            }
        case .service:
            let app = try AppService(table: table, name: configuration.service, configuration: configuration, forwards: true)
            responder = PointToPointResponder(context: context, app: app)
            self.app = app
            if let path = configuration.routeFile, access(path, F_OK) == 0 {
                if let problem = reloadRoute(from: path) { log.warning("\(problem); serving the table's default route instead") }
            }
        case .function:
            let app = try AppService(table: table, name: configuration.service, configuration: configuration, forwards: false)
            responder = FunctionInstanceResponder(context: context, app: app)
        case .orchestrator(let gateway):
            let app = try AppService(table: table, name: table.entryService, configuration: configuration, forwards: true)
            responder = OrchestratorResponder(context: context, app: app, gateway: gateway)
        case .gateway:
            preconditionFailure("the gateway was handled above")
        }
        if let url = configuration.checkpoint {
            guard let store = CheckpointStore(url: url) else {
                throw HostStartupError("--checkpoint must be redis://HOST:PORT or redis://HOST:PORT/PREFIX, got '\(url)'")
            }
            let stateful = stateServices.filter(\.hasState)
            if stateful.isEmpty {
                log.warning("--checkpoint \(store): \(configuration.services.joined(separator: ", ")) own(s) no @Placed state; nothing is written")
            } else {
                context.checkpoint = Checkpointer(store: store, app: table.appName, services: stateful,
                                                  interval: configuration.checkpointInterval, context: context)
            }
        }
    }

    /// A host of several services hands over a file per service: its hand-over paths must say
    /// where each goes. (A fan-in dependency on one of its own services is a hop to the host
    /// itself: `HostContext.ownAddress`.)
    private static func checkFused(_ configuration: HostConfiguration) throws(HostStartupError) {
        guard configuration.services.count > 1 else { return }
        for (flag, path) in [("--state-out", configuration.stateOut), ("--state-in", configuration.stateIn)] {
            if let path, !path.contains("{service}") {
                throw HostStartupError("\(flag) '\(path)': a host of several services hands over a file per service; put {service} in the path (for example /run/app/{service}.state)")
            }
        }
    }

    /// Binds the listening socket; after this, `boundAddress` is known.
    package func bind() throws(HostStartupError) {
        let address: SocketAddress
        do { address = try SocketAddress(ip: configuration.host, port: configuration.port) } catch {
            throw HostStartupError("--host '\(configuration.host)' is not a numeric IP address (for example 127.0.0.1 or 0.0.0.0)")
        }
        do {
            server = try TCPHandle.listen(loop: loop, on: address, reusePort: true, freeBind: configuration.freeBind,
                                          onAcceptError: { [unowned self] error in acceptFailed(error) }) { [unowned self] handle in accepted(handle) }
        } catch {
            let hint = error.isAddressInUse ? "; another process listens there (pick another --port, or 0 for any free port)" : ""
            throw HostStartupError("cannot listen on \(address): \(error.reason)\(hint)")
        }
        boundAddress = server?.localAddress?.description ?? address.description
        if let port = server?.localAddress?.port {
            boundPort = port
            context.ownAddress = PeerAddress(host: configuration.host == "0.0.0.0" ? "127.0.0.1" : configuration.host, port: port)
        }
        if configuration.controlPort != 0 {
            guard let control = try? SocketAddress(ip: configuration.host, port: configuration.controlPort) else {
                throw HostStartupError("--control-port \(configuration.controlPort) on --host '\(configuration.host)' is not an address to listen on")
            }
            do {
                controlServer = try TCPHandle.listen(loop: loop, on: control, reusePort: true, freeBind: configuration.freeBind,
                                                     onAcceptError: { [unowned self] error in acceptFailed(error) }) { [unowned self] handle in
                    accepted(handle, control: true)
                }
            } catch {
                throw HostStartupError("cannot listen on \(control) for hand-overs (--control-port): \(error.reason)")
            }
        }
        for entry in configuration.alsoListen {
            guard let equals = entry.firstIndex(of: "="), let peer = PeerAddress(parsing: String(entry[entry.index(after: equals)...])),
                  case let name = String(entry[..<equals]), configuration.services.contains(name),
                  let more = try? SocketAddress(ip: peer.host, port: peer.port) else {
                throw HostStartupError("--also-listen '\(entry)' must be NAME=IP:PORT with NAME one of --service (\(configuration.services.joined(separator: ",")))")
            }
            do {
                let handle = try TCPHandle.listen(loop: loop, on: more, reusePort: true, freeBind: configuration.freeBind,
                                                  onAcceptError: { [unowned self] error in acceptFailed(error) }) { [unowned self] handle in
                    accepted(handle, root: "/" + name)
                }
                moreServers.append((handle, "/" + name))
            } catch {
                throw HostStartupError("cannot listen on \(more) for '\(name)' (--also-listen): \(error.reason)")
            }
        }
    }

    /// Stops listening everywhere; returns how many waiting connections it took first when
    /// `takePending` (a hand-over serves those).
    @discardableResult
    private func closeListeners(takePending: Bool, keepControl: Bool = false) -> Int {
        var taken = 0
        if takePending {
            taken += server?.acceptPending() ?? 0
            for more in moreServers { taken += more.handle.acceptPending() }
        }
        server?.close()
        server = nil
        for more in moreServers { more.handle.close() }
        moreServers.removeAll()
        if !keepControl {
            controlServer?.close()
            controlServer = nil
        }
        return taken
    }

    /// A connection the kernel would not hand over; out of descriptors, it was closed unanswered.
    private func acceptFailed(_ error: LoopError) {
        let hint = error.code == -EMFILE || error.code == -ENFILE
            ? ": connections are closed unanswered until descriptors are free; raise the limit (ulimit -n, LimitNOFILE=) or lower --max-in-flight"
            : ""
        log.warning("cannot accept a connection on \(boundAddress): \(error.reason)\(hint)")
    }

    /// Serves until SIGTERM or SIGINT has drained the host. Call `bind()` first.
    package func run() throws(HostStartupError) {
        if server == nil { try bind() }
        context.loopThread = pthread_self()
        do {
            for signal in [SIGTERM, SIGINT] {
                signals.append(try SignalWatcher(loop: loop, signal: signal) { [unowned self] number in
                    beginDrain(signal: number)
                })
            }
            if let path = configuration.routeFile {
                signals.append(try SignalWatcher(loop: loop, signal: SIGHUP) { [unowned self] _ in
                    if let problem = reloadRoute(from: path) { log.error("\(problem); the default route stays '\(app?.defaultRoute.chain.source ?? "")'") }
                })
            }
            if configuration.stateOut != nil {
                signals.append(try SignalWatcher(loop: loop, signal: SIGUSR1) { [unowned self] number in
                    guard !draining else { return log.warning("signal \(number): already draining; no hand-over") }
                    handOver.active = true
                    beginDrain(signal: number)
                })
            }
            if let path = configuration.stateIn { try awaitState(at: path) }
            if let from = configuration.handoverFrom {
                try pullState(from: from)
            } else if configuration.stateIn == nil, context.checkpoint != nil {
                readCheckpoint(because: "started")
            }
            let sweep = try LoopTimer(loop: loop)
            let parent = getppid()
            var ticks = 0
            sweep.start(after: 50, repeat: 50) { [unowned self] in
                context.sweepDeadlines()
                ticks += 1
                if ticks % 4 == 0 { context.tracer.tick(second: ticks % 20 == 0) }
                // Once a second: a supervisor that died (even by SIGKILL) must not leave us running.
                if configuration.exitWithParent, ticks % 20 == 0, getppid() != parent, !draining {
                    log.warning("parent process \(parent) is gone: draining and exiting")
                    beginDrain(signal: SIGTERM)
                }
            }
            sweepTimer = sweep
            phaseHook = try LoopPhaseHook(loop: loop) { [unowned self] in context.startQueued() }
            context.batchesHops = true
        } catch {
            throw HostStartupError("cannot set up signals and timers: \(error)")
        }
        lendLoop()
        for warning in responder.startWarnings { log.warning(warning) }
        if case .service = role, context.appKey == nil {
            log.warning("no app key (--app-key-file or DYNINKA_APP_KEY): any client that reaches this service may choose its route and arguments; `dyninka run` and `dyninka deploy` give every host one")
        }
        log.info(responder.startLine(address: boundAddress))
        loop.run()
        context.wakeup.close()
        loop.close()
        context.tracer.close()
        log.info("stopped")
    }

    /// Lends the loop to the app library (ABI 2): async services then run on this thread, and
    /// their fetches go through the context's exchanges. Called once, on the loop thread, before serving.
    private func lendLoop() {
        guard let table, lender == nil else { return }
        let context = context
        let lender = LoopLender(
            wake: { [unowned context] in
                // From the loop itself: after this burst of events, with no system call.
                if pthread_equal(pthread_self(), context.loopThread) != 0 && context.batchesHops {
                    context.jobsQueued = true
                    return
                }
                let runJobs = table.runJobs
                context.wakeup.submit { runJobs?() }
            },
            exchange: { [unowned context] name, port, request, timeout, done in
                context.exchanges.start(host: name, port: port, request: request, timeout: timeout, done: done)
            })
        if table.lend(lender) {
            self.lender = lender
            context.runJobs = table.runJobs
        }
    }

    // MARK: Connections

    private func accepted(_ handle: any ByteStream, root: String? = nil, control: Bool = false) {
        let connection = InboundConnection(server: self, handle: handle)
        connection.root = root
        connection.control = control
        metrics.connections += 1
        connection.start()
    }

    // MARK: In process (tests)

    /// Gets the host ready to serve streams given by `serve(_:)` on the calling thread, without
    /// a listening socket or signals: tests drive it with `runOnce()`. The loop is not lent to
    /// the app library (a library takes the first loop lent to it for the process's life), so
    /// async services run on Swift's executors and complete through the loop's wakeup.
    package func startInProcess() {
        context.loopThread = pthread_self()
    }

    /// Serves `stream` as if it had just been accepted.
    package func serve(_ stream: any ByteStream) { accepted(stream) }

    /// Runs one iteration of the loop without waiting, then the hops and jobs it queued.
    package func runOnce() {
        loop.runOnce()
        context.startQueued()
    }

    /// The loop the host runs on (an in-process test reads into its blocks).
    package var eventLoop: EventLoop { loop }

    func connectionClosed(_ connection: InboundConnection) {
        metrics.connections -= 1
        if handOver.held != nil { forgetHeld(connection) }
        if handOver.active { trySeal() }
        if draining { checkDrained() }
    }

    // MARK: Requests

    /// Every request: POSTs go to the role's responder (within --max-in-flight); the server
    /// answers health, readiness, metrics and the description itself.
    func dispatch(_ head: HTTPHead, body: OwnedBytes?, on connection: InboundConnection) {
        if connection.control { return controlRequest(head, on: connection) }
        let started = EventLoop.nanoseconds()
        let target = head.target
        // The path without a query, found on the UTF-8 bytes (Character iteration costs more).
        let path = target.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(target[..<$0]) } ?? target
        if head.method == "POST" {
            // Past the limit, answer at once (and cheaply) rather than queue or drop: callers relay
            // the 503 and its Retry-After. A request holds its slot until its response is written;
            // a request held for the state (HandOver.swift) holds one too.
            guard metrics.inFlight < configuration.maxInFlight else {
                let trace = context.tracer.begin(head)
                return connection.send(ServiceFailure(
                    service: configuration.service, kind: .overloaded,
                    message: "'\(configuration.service)' has \(metrics.inFlight) requests in flight (limit \(configuration.maxInFlight)); retry after 1 s"),
                    timing: HopTiming(name: configuration.service, started: started, trace: trace))
            }
            connection.claimSlot()
            // A listener of --also-listen: its `/` is its service's path.
            let request = Request(head: head, body: body, path: path == "/" ? connection.root ?? path : path, started: started,
                                  trace: context.tracer.begin(head))
            if handOver.held != nil { return hold(request, on: connection) }
            if handOver.successor != nil { return relayToSuccessor(request, on: connection) }
            if handOver.sealed { return refuseAfterSeal(request, on: connection) }
            return serve(request, on: connection)
        }
        // HEAD is answered like GET, without the body (the connection leaves it out).
        let method = head.method == "HEAD" ? "GET" : head.method
        switch (method, path) {
        case ("GET", "/healthz"):
            text(200, "ok\n", on: connection)
        case ("GET", "/readyz"):
            // Not ready while it waits for its predecessor's state (or drains).
            let holding = handOver.held != nil
            text(draining || holding ? 503 : 200, draining ? "draining\n" : holding ? "waiting for the state\n" : "ready\n", on: connection)
        case ("GET", "/metrics"):
            metrics.nameLookups = context.names.lookups
            // Spans held for the exporter count too: a slow receiver must show here.
            metrics.bufferedBytes = context.bufferedBytes + context.tracer.heldBytes
            metrics.readBlocks = loop.blockCount
            metrics.spansDropped = context.tracer.dropped
            text(200, metrics.render(), on: connection, type: "text/plain; version=0.0.4")
        case ("GET", "/"):
            guard let description = responder.describe() else { fallthrough }
            text(200, description, on: connection, type: "application/json")
        case (_, _) where responder.serves(path):
            reject(ServiceFailure(service: configuration.service, kind: .badInput,
                                  message: "method \(head.method) is not allowed; POST the input as JSON", status: 405), on: connection)
        default:
            reject(ServiceFailure(service: configuration.service, kind: .badRoute,
                                  message: noSuchPath(path, service: configuration.service), status: 404),
                   on: connection)
        }
    }

    /// Hands a POST whose slot is claimed to the role's responder.
    func serve(_ request: Request, on connection: InboundConnection) {
        responder.respond(to: request, on: connection)
    }

    private func text(_ status: Int, _ text: String, on connection: InboundConnection, type: String = "text/plain") {
        let body = ByteStore(capacity: text.utf8.count)
        body.append(string: text)
        connection.respond(status: status, body: body.owned) { head in
            head.append("Content-Type: ")
            head.append(string: type)
            head.append("\r\n")
        }
    }

    private func reject(_ failure: ServiceFailure, on connection: InboundConnection) {
        connection.respond(failure: failure)
    }

    // MARK: Draining

    /// A request's response is written (or its connection is gone).
    func requestFinished() {
        if draining { checkDrained() }
    }

    private func beginDrain(signal: Int32) {
        if draining {
            log.warning("second signal: exiting without waiting for \(metrics.inFlight) request(s)")
            return shutdown()
        }
        context.draining = true
        log.info(handOver.active && handOver.successor == nil
                 ? "signal \(signal): handing over to a new instance (no longer accepting; \(metrics.inFlight) request(s) in flight)"
                 : "signal \(signal): draining (readyz answers 503, \(metrics.inFlight) request(s) in flight)")
        // Stopping with state and a control port, and no successor has asked yet (a drain or an
        // eviction: the replacement starts elsewhere only now): the state waits for it, within
        // the drain's bound, and the control listener stays open for it.
        if configuration.controlPort != 0, !handOver.active, stateServices.contains(where: \.hasState) {
            handOver.waitingForPull = true
            log.info("waiting up to \(configuration.drainDelay + configuration.drainTimeout) ms for a successor to ask for the @Placed state of \(configuration.services.joined(separator: ", "))")
        }
        let stopAccepting = { [unowned self] in
            closeListeners(takePending: false, keepControl: handOver.waitingForPull)
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
            if handOver.active && handOver.successor == nil {
                // A hand-over stops accepting at once: the new instance already listens on the
                // port. Closing the listener would reset the connections in its accept queue,
                // whose clients already sent their requests: those are taken and served first.
                // (A move has had the node refuse new connections until no handshake was under
                // way; a swap on one node has the kernel pass them on, tcp_migrate_req.)
                let taken = closeListeners(takePending: true)
                if taken > 0 { log.info("hand-over: serving \(taken) connection(s) that waited in the accept queue") }
                try beginHandOver()
                checkDrained()
            } else if configuration.drainDelay > 0 {
                let delay = try LoopTimer(loop: loop)
                delay.start(after: UInt64(configuration.drainDelay)) { delay.close(); stopAccepting() }
            } else {
                stopAccepting()
            }
        } catch {
            shutdown()
        }
    }

    func checkDrained() {
        guard draining, server == nil, metrics.inFlight == 0 else { return }
        // The state still waits for its successor (the drain timeout ends the wait).
        if handOver.waitingForPull, !handOver.sealed { return }
        // Draining closes every connection without a request running. A hand-over keeps those
        // whose request has not fully come yet (their callers saw them connected) until the
        // state is written: they are served before, or refused (HandOver.swift).
        for connection in connections where !connection.busy && (!handOver.active || handOver.sealed || connection.betweenRequests) {
            connection.close()
        }
        if metrics.connections == 0 { shutdown() }
    }

    private var stopped = false

    func shutdown() {
        guard !stopped else { return }
        stopped = true
        if handOver.active, !handOver.sealed { seal(reason: "the host is exiting (drain timeout or a second signal)") }
        if handOver.waitingForPull, !handOver.active {
            log.warning("no successor asked for the @Placed state of \(configuration.services.joined(separator: ", ")) before the host stopped: it is lost (a checkpoint would keep it)")
        }
        handOver.closeTimers()
        closeListeners(takePending: false)
        for connection in connections { connection.close() }
        if lender != nil { context.exchanges.closeIdle() }
        sweepTimer?.close()
        phaseHook?.close()
        exitTimer?.close()
        for signal in signals { signal.close() }
        signals.removeAll()
        loop.stop()
    }
}

// MARK: - main's chain replaced while the host runs

extension ServiceHost {
    /// Reads the route file (route, then arguments) and makes it the default; the problem when it
    /// cannot (nothing changes then).
    func reloadRoute(from path: String) -> String? {
        guard let app else { return "--route-file applies to a point-to-point service" }
        guard let bytes = readFile(path) else { return "cannot read the route file \(path)" }
        let text = String(decoding: bytes, as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
        let route = lines.first ?? ""
        let arguments = lines.count > 1 && !lines[1].isEmpty ? lines[1] : nil
        do throws(RouteError) {
            try app.setDefaults(route: route, arguments: arguments)
        } catch {
            return "the route file \(path) gives '\(route)'\(arguments.map { " with arguments '\($0)'" } ?? ""), which does not fit '\(app.service.name)': \(error.message)"
        }
        log.info("default route now: \(route.isEmpty ? "none" : route)\(arguments.map { " (arguments \($0))" } ?? "")")
        return nil
    }
}

/// A host that cannot start; the message says what to change.
package struct HostStartupError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}
