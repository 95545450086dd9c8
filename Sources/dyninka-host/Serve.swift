import ArgumentParser
import DyninkaHost
import Foundation

extension DyninkaHostCommand {
    /// `dyninka-host serve`: one service of an app library on one port.
    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve one service of an app library.",
            discussion: """
                Example (the paper's chain, one process per service):
                  dyninka-host serve --app libApp.so --service map --port 8083 \\
                      --peers movingAvg=127.0.0.1:8084

                Every option can also come from a DYNINKA_* environment variable (see the README); \
                flags win. SIGTERM or SIGINT drains: /readyz answers 503, in-flight requests finish, \
                then the process exits 0.
                """)

        @Option(help: "Path of the app library built by `dyninka build` (env DYNINKA_APP).")
        var app: String?
        @Option(help: "Name of the service to run (env DYNINKA_SERVICE).")
        var service: String?
        @Option(help: "Numeric IP address to listen on (default 127.0.0.1; env DYNINKA_HOST).")
        var host: String?
        @Option(help: "Port to listen on; 0 picks a free one (default 8080; env DYNINKA_PORT).")
        var port: Int?
        @Option(name: .customLong("peers"), help: "Where other services listen: NAME=HOST:PORT, comma-separated; repeatable (env DYNINKA_PEERS).")
        var peers: [String] = []
        @Option(help: "JSON placement file: {\"services\": {\"NAME\": \"HOST:PORT\"}} (env DYNINKA_PLACEMENT).")
        var placement: String?
        @Option(help: "Address pattern for services not listed, e.g. '{name}.default.svc.cluster.local:8080' (env DYNINKA_PEER_TEMPLATE).")
        var peerTemplate: String?
        @Option(help: "Milliseconds to wait for a next hop to accept a connection before 504 timeout (default 2000).")
        var connectTimeout: Int?
        @Option(help: "Milliseconds to wait for a next hop's response before 504 (default 30000).")
        var responseTimeout: Int?
        @Option(help: "Milliseconds a client has to send a complete request before 408 (default 10000).")
        var requestTimeout: Int?
        @Option(help: "Milliseconds a response may wait for its client to read it; then the connection closes (default 10000).")
        var writeTimeout: Int?
        @Option(help: "Most bytes of requests and responses held at once, host-wide; beyond it 503 overloaded (default 268435456).")
        var maxBufferedBytes: Int?
        @Option(help: "Largest request line and header section in bytes; 431 beyond (default 16384).")
        var maxHeaderBytes: Int?
        @Option(help: "Largest request body in bytes, 413 beyond; a larger relayed response answers 502 (default 8388608).")
        var maxBodyBytes: Int?
        @Option(help: "Most service calls one request may make, route and arguments together; 400 bad-route beyond (default 64).")
        var maxHops: Int?
        @Option(help: "Most times one request may run any one service; 400 bad-route beyond (default 4).")
        var maxVisits: Int?
        @Flag(help: "Accept only main's route and arguments: clients cannot choose what runs (env DYNINKA_FIXED_ROUTES). With an app key, this holds for every request without the app's signature anyway.")
        var fixedRoutes = false
        @Option(help: "The app key file (hex; env DYNINKA_APP_KEY_FILE, or the key itself in DYNINKA_APP_KEY): hops of the app are signed with it, and a request without a valid signature may only run main's chain at the entry (or a --public service) or an --allow-route route.")
        var appKeyFile: String?
        @Flag(name: .customLong("public"), help: "With an app key: clients may run main's chain at this service too, not only at the app's entry (env DYNINKA_PUBLIC).")
        var isPublic = false
        @Option(help: "With an app key: a route a client may also send here (route syntax, e.g. 'map().movingAvg()'); repeatable (env DYNINKA_ALLOW_ROUTES, ';'-separated).")
        var allowRoute: [String] = []
        @Option(help: "Most requests processed at once; beyond it 503 overloaded with Retry-After (default 512).")
        var maxInFlight: Int?
        @Option(help: "Milliseconds a peer's resolved addresses are used before its name is looked up again (default 10000).")
        var nameTtl: Int?
        @Option(help: "Milliseconds to keep retrying a next hop that refused the connection, before 502 (default 250).")
        var connectRetry: Int?
        @Option(help: "Milliseconds to keep accepting after SIGTERM while /readyz answers 503 (default 0).")
        var drainDelay: Int?
        @Option(help: "Milliseconds to wait for in-flight requests after SIGTERM (default 30000).")
        var drainTimeout: Int?
        @Flag(help: "Log every request.")
        var accessLog = false
        @Flag(help: "Exit (draining) when the parent process exits; `dyninka run` sets it.")
        var exitWithParent = false
        @Option(help: "debug, info, warning or error (default info; env DYNINKA_LOG_LEVEL).")
        var logLevel: String?
        @Option(help: "Hot swap, old side: on SIGUSR1 stop accepting, write the service's @Placed state to this file once no call runs, relay what is in flight, exit.")
        var stateOut: String?
        @Option(help: "Hot swap, old side: milliseconds a request partly received at SIGUSR1 may take before it is refused (503) so that the state can go (default 3000).")
        var handoverTimeout: Int?
        @Option(help: "Hot swap, new side: hold requests until the old instance's state appears in this file, restore it, then serve.")
        var stateIn: String?
        @Option(help: "With --state-in: milliseconds to hold requests for the old instance to begin its hand-over before starting fresh; once begun, as long as it announces (default 10000).")
        var stateWait: Int?
        @Flag(help: "Listen on --host even when this machine does not have that address yet (IP_FREEBIND): a moving service's new host waits there for its address.")
        var freeBind = false
        @Option(help: "main's chain for this service, replaceable while it runs: the default route on the first line, the default arguments on the second; read at start if it exists and on SIGHUP.")
        var routeFile: String?
        @OptionGroup(title: "Tracing (W3C traceparent is always continued; spans are recorded only with an exporter)")
        var tracing: TraceOptions

        func run() throws {
            var flags: [String: String] = [:]
            flags["app"] = app
            flags["service"] = service
            flags["host"] = host
            flags["port"] = port.map(String.init)
            if !peers.isEmpty { flags["peers"] = peers.joined(separator: ",") }
            flags["placement"] = placement
            flags["peer-template"] = peerTemplate
            flags["connect-timeout"] = connectTimeout.map(String.init)
            flags["response-timeout"] = responseTimeout.map(String.init)
            flags["request-timeout"] = requestTimeout.map(String.init)
            flags["write-timeout"] = writeTimeout.map(String.init)
            flags["max-buffered-bytes"] = maxBufferedBytes.map(String.init)
            flags["max-visits"] = maxVisits.map(String.init)
            flags["name-ttl"] = nameTtl.map(String.init)
            if fixedRoutes { flags["fixed-routes"] = "true" }
            flags["app-key-file"] = appKeyFile
            if isPublic { flags["public"] = "true" }
            if !allowRoute.isEmpty { flags["allow-route"] = allowRoute.joined(separator: ";") }
            flags["max-header-bytes"] = maxHeaderBytes.map(String.init)
            flags["max-body-bytes"] = maxBodyBytes.map(String.init)
            flags["max-hops"] = maxHops.map(String.init)
            flags["max-in-flight"] = maxInFlight.map(String.init)
            flags["connect-retry"] = connectRetry.map(String.init)
            flags["drain-delay"] = drainDelay.map(String.init)
            flags["drain-timeout"] = drainTimeout.map(String.init)
            if accessLog { flags["access-log"] = "true" }
            if exitWithParent { flags["exit-with-parent"] = "true" }
            flags["log-level"] = logLevel
            flags["state-out"] = stateOut
            flags["handover-timeout"] = handoverTimeout.map(String.init)
            flags["state-in"] = stateIn
            flags["state-wait"] = stateWait.map(String.init)
            if freeBind { flags["free-bind"] = "true" }
            flags["route-file"] = routeFile
            tracing.add(to: &flags)
            runHost(label: "serving") {
                let configuration = try HostConfiguration.resolve(flags: flags, environment: ProcessInfo.processInfo.environment)
                return try ServiceHost(configuration: configuration, table: try ServiceTable(path: configuration.appPath))
            }
        }
    }
}
