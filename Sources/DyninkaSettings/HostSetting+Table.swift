extension HostSetting {
    /// Every setting of `dyninka-host`, in the order `--help`, the docs and launchers show them.
    package static let all: [HostSetting] = [
        app, service, host, port, alsoListen, peers, placement, peerTemplate, nameTTL,
        connectTimeout, responseTimeout, requestTimeout, writeTimeout, connectRetry,
        maxHeaderBytes, maxBodyBytes, maxBufferedBytes, maxInFlight, maxHops, maxVisits, fixedRoutes,
        appKeyFile, appKey, publicService, allowRoute,
        drainDelay, drainTimeout, accessLog, exitWithParent, logLevel,
        routeFile, stateOut, handoverTimeout, stateIn, stateWait, freeBind, controlPort, handoverFrom, podIP, checkpoint, checkpointInterval,
        otlpFile, otlpEndpoint, traceRate,
    ]

    /// The setting with this flag name (without dashes), if there is one.
    package static func named(_ flag: String) -> HostSetting? { all.first { $0.flag == flag } }

    private static let milliseconds = 1...3_600_000

    // What to run and where.
    package static let app = HostSetting("app", "DYNINKA_APP", .text, .optionalText(\.app),
                                         "Path of the app library built by `dyninka build`.", defaultNote: "(required)")
    package static let service = HostSetting("service", "DYNINKA_SERVICE", .text, .optionalText(\.service),
                                             "Name of the service this process runs; several, comma-separated (a,b,c), run fused in one process: calls between them stay in process, typed, and each answers at /NAME (/ runs the first).", defaultNote: "(required)")
    package static let host = HostSetting("host", "DYNINKA_HOST", .text, .text(\.host),
                                          "Numeric IP address to listen on (0.0.0.0 exposes the service beyond this machine).")
    package static let port = HostSetting("port", "DYNINKA_PORT", .integer(0...65535, unit: nil), .integer(\.port),
                                          "Port to listen on; 0 picks a free one (printed on stdout).")
    package static let alsoListen = HostSetting(
        "also-listen", "DYNINKA_ALSO_LISTEN", .list(separator: ","), .list(\.alsoListen),
        "More addresses to listen on, NAME=HOST:PORT, comma-separated, where / runs NAME (one of --service): a fused host takes over the addresses its services had apart.")
    package static let peers = HostSetting("peers", "DYNINKA_PEERS", .list(separator: ","), .list(\.peers),
                                           "Where other services listen: NAME=HOST:PORT, comma-separated; repeatable.")
    package static let placement = HostSetting("placement", "DYNINKA_PLACEMENT", .text, .optionalText(\.placement),
                                                "JSON placement file: {\"services\": {\"NAME\": \"HOST:PORT\"}, \"template\": \"...\"}.")
    package static let peerTemplate = HostSetting(
        "peer-template", "DYNINKA_PEER_TEMPLATE", .text, .optionalText(\.peerTemplate),
        "Address of services not listed, e.g. '{name}.default.svc.cluster.local:8080' ({name} becomes the DNS-safe name: movingAvg -> moving-avg).")
    package static let nameTTL = HostSetting("name-ttl", "DYNINKA_NAME_TTL_MS", .integer(0...3_600_000, unit: "ms"), .integer(\.nameTTL),
                                             "Milliseconds a peer name's addresses are used before it is looked up again (at once after a failed connection).")

    // Time limits.
    package static let connectTimeout = HostSetting("connect-timeout", "DYNINKA_CONNECT_TIMEOUT_MS", .integer(milliseconds, unit: "ms"),
                                                    .integer(\.connectTimeout),
                                                    "Milliseconds a next hop may take to accept a connection before 504 timeout.")
    package static let responseTimeout = HostSetting("response-timeout", "DYNINKA_RESPONSE_TIMEOUT_MS", .integer(milliseconds, unit: "ms"),
                                                     .integer(\.responseTimeout), "Milliseconds a next hop may take to answer before 504.")
    package static let requestTimeout = HostSetting("request-timeout", "DYNINKA_REQUEST_TIMEOUT_MS", .integer(milliseconds, unit: "ms"),
                                                    .integer(\.requestTimeout), "Milliseconds a client has to send a complete request before 408.")
    package static let writeTimeout = HostSetting("write-timeout", "DYNINKA_WRITE_TIMEOUT_MS", .integer(milliseconds, unit: "ms"),
                                                  .integer(\.writeTimeout),
                                                  "Milliseconds a response may wait for its client to read it; then the connection closes.")
    package static let connectRetry = HostSetting("connect-retry", "DYNINKA_CONNECT_RETRY_MS", .integer(0...60_000, unit: "ms"),
                                                  .integer(\.connectRetry),
                                                  "Milliseconds to keep retrying (every 5 ms) a next hop that refused the connection (a restart on its port, a move) before 502.")

    // What one request, and all of them together, may cost.
    package static let maxHeaderBytes = HostSetting("max-header-bytes", "DYNINKA_MAX_HEADER_BYTES", .integer(1024...1_048_576, unit: "bytes"),
                                                    .integer(\.maxHeaderBytes), "Largest request line and header section; 431 beyond.")
    package static let maxBodyBytes = HostSetting("max-body-bytes", "DYNINKA_MAX_BODY_BYTES", .integer(1...1_073_741_824, unit: "bytes"),
                                                  .integer(\.maxBodyBytes),
                                                  "Largest request body, 413 beyond; a larger response from a next hop answers 502.")
    package static let maxBufferedBytes = HostSetting(
        "max-buffered-bytes", "DYNINKA_MAX_BUFFERED_BYTES", .integer(65_536...(1 << 40), unit: "bytes"), .integer(\.maxBufferedBytes),
        "Most bytes of requests and responses held at once, host-wide; beyond it 503 overloaded.")
    package static let maxInFlight = HostSetting("max-in-flight", "DYNINKA_MAX_IN_FLIGHT", .integer(1...1_000_000, unit: nil),
                                                 .integer(\.maxInFlight),
                                                 "Most requests in flight, until their response is written; beyond it 503 overloaded with Retry-After.")
    package static let maxHops = HostSetting("max-hops", "DYNINKA_MAX_HOPS", .integer(1...1024, unit: nil), .integer(\.maxHops),
                                             "Most service calls one request may make, route and arguments together; 400 bad-route beyond.")
    package static let maxVisits = HostSetting("max-visits", "DYNINKA_MAX_VISITS", .integer(1...1024, unit: nil), .integer(\.maxVisits),
                                               "Most times one request may run any one service; 400 bad-route beyond.")
    package static let fixedRoutes = HostSetting("fixed-routes", "DYNINKA_FIXED_ROUTES", .flag, .flag(\.fixedRoutes),
                                                 "Without an app key: accept only main's route and arguments, so clients cannot choose what runs.")

    // The app key and the routes clients may send.
    package static let appKeyFile = HostSetting(
        "app-key-file", "DYNINKA_APP_KEY_FILE", .text, .optionalText(\.appKeyFile),
        "The app key file (hex, 32 digits or more): hops of the app are signed with it, and a request without a valid signature may only run main's chain at the entry (or a --public service) or an --allow-route route.")
    package static let appKey = HostSetting(nil, "DYNINKA_APP_KEY", .text, .optionalText(\.appKey),
                                            "The app key itself (hex), when no key file is given: from a Secret, never a flag.")
    package static let publicService = HostSetting("public", "DYNINKA_PUBLIC", .flag, .optionalFlag(\.publicService),
                                                   "With an app key: clients may run main's chain at this service too, not only at the app's entry.",
                                                   defaultNote: "off (on for the app's entry)")
    package static let allowRoute = HostSetting("allow-route", "DYNINKA_ALLOW_ROUTES", .list(separator: ";"), .list(\.allowedRoutes),
                                                "With an app key: a route a client may also send here (route syntax, e.g. 'map().movingAvg()'); repeatable, ';'-separated as a variable.")

    // Draining, logs.
    package static let drainDelay = HostSetting("drain-delay", "DYNINKA_DRAIN_DELAY_MS", .integer(0...3_600_000, unit: "ms"), .integer(\.drainDelay),
                                                "Milliseconds to keep accepting after SIGTERM while /readyz answers 503.")
    package static let drainTimeout = HostSetting("drain-timeout", "DYNINKA_DRAIN_TIMEOUT_MS", .integer(0...3_600_000, unit: "ms"),
                                                  .integer(\.drainTimeout), "Milliseconds to wait for in-flight requests after SIGTERM.")
    package static let accessLog = HostSetting("access-log", "DYNINKA_ACCESS_LOG", .flag, .flag(\.accessLog), "Log every request.")
    package static let exitWithParent = HostSetting("exit-with-parent", nil, .flag, .flag(\.exitWithParent),
                                                    "Drain and exit when the parent process exits; `dyninka run` sets it.")
    package static let logLevel = HostSetting("log-level", "DYNINKA_LOG_LEVEL", .choice(["debug", "info", "warning", "error"]), .text(\.logLevel),
                                              "The least severe level logged: debug, info, warning or error.")

    // Live evolution: routes, hand-overs, moves.
    package static let routeFile = HostSetting(
        "route-file", nil, .text, .optionalText(\.routeFile),
        "main's chain for this service, replaceable while it runs: the route on the first line, the arguments on the second; read at start when it exists and on SIGHUP.")
    package static let stateOut = HostSetting(
        "state-out", nil, .text, .optionalText(\.stateOut),
        "Hand-over, old side: on SIGUSR1 stop accepting, write the service's @Placed state to this file once no call runs and no request is partly received, relay what is in flight, exit.")
    package static let handoverTimeout = HostSetting(
        "handover-timeout", nil, .integer(0...600_000, unit: "ms"), .integer(\.handoverTimeout),
        "Hand-over, old side: milliseconds a request partly received at SIGUSR1 may take before it is refused (503) so that the state can go.")
    package static let stateIn = HostSetting(
        "state-in", nil, .text, .optionalText(\.stateIn),
        "Hand-over, new side: hold requests until the old instance's state appears in this file, restore it, then serve; the outcome goes to FILE.result and /metrics.")
    package static let stateWait = HostSetting(
        "state-wait", nil, .integer(0...600_000, unit: "ms"), .integer(\.stateWait),
        "Hand-over, new side: milliseconds to wait for the old instance to begin its hand-over; once begun, as long as it announced, plus a second.")
    package static let freeBind = HostSetting(
        "free-bind", nil, .flag, .flag(\.freeBind),
        "Listen on --host even when this machine does not have that address yet (IP_FREEBIND): a moving service's new host waits there for its address.")

    package static let controlPort = HostSetting(
        "control-port", "DYNINKA_CONTROL_PORT", .integer(0...65535, unit: nil), .integer(\.controlPort),
        "Pod hand-over, old side: listen on --host at this port for a successor's signed POST /handover (never for clients); it is answered with the @Placed state once no call runs, and from then on requests here are relayed to the successor. 0: none.")
    package static let handoverFrom = HostSetting(
        "handover-from", "DYNINKA_HANDOVER_FROM", .text, .optionalText(\.handoverFrom),
        "Pod hand-over, new side: NAME:PORT of the predecessors' control ports (a headless Service that lists not-ready pods); hold requests and readiness until one hands its state over, or none is there (then start fresh at once).")
    package static let podIP = HostSetting(
        "pod-ip", "DYNINKA_POD_IP", .text, .optionalText(\.podIP),
        "This instance's own IP (Kubernetes: status.podIP): a successor names it as where requests go after the hand-over, and skips it among the predecessors.")

    package static let checkpoint = HostSetting(
        "checkpoint", "DYNINKA_CHECKPOINT", .text, .optionalText(\.checkpoint),
        "Write the @Placed state to this Redis server after calls that may change it (redis://HOST:PORT[/PREFIX]), and start from it when no predecessor hands state over: what survives the loss of this instance's node.")
    package static let checkpointInterval = HostSetting(
        "checkpoint-interval", "DYNINKA_CHECKPOINT_INTERVAL", .integer(0...600_000, unit: "ms"), .integer(\.checkpointInterval),
        "With --checkpoint: 0 answers a call that may change the state only once the store holds it (no acknowledged update is lost); N writes at most every N ms and answers at once (up to N ms of updates may be lost).")

    // Tracing.
    package static let otlpFile = HostSetting("otlp-file", "DYNINKA_OTLP_FILE", .text, .optionalText(\.otlpFile),
                                              "Append the spans of recorded traces to this file as OTLP/JSON, one batch per line.")
    package static let otlpEndpoint = HostSetting(
        "otlp-endpoint", "DYNINKA_OTLP_ENDPOINT", .text, .optionalText(\.otlpEndpoint),
        "POST the spans of recorded traces as OTLP/JSON to this OTLP/HTTP receiver, e.g. http://127.0.0.1:4318/v1/traces.")
    package static let traceRate = HostSetting(
        "trace-rate", "DYNINKA_TRACE_RATE", .integer(0...1_000_000, unit: nil), .integer(\.traceRate),
        "Most traces this host begins recording per second, for requests without traceparent; a sampled traceparent is always recorded.")
}
