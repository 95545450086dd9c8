/// Every setting of a dyninka-host process, read in one place (flags and DYNINKA_* variables;
/// see the README's table). Durations are milliseconds, sizes bytes.
package struct HostConfiguration: Sendable {
    /// Path of the app library (`dyninka build` output) to dlopen.
    package var appPath: String
    /// The service this process runs.
    package var service: String
    /// Address to listen on; loopback by default so nothing is exposed by accident.
    package var host = "127.0.0.1"
    /// Port to listen on; 0 lets the kernel pick (the chosen port is logged and printed).
    package var port = 8080
    /// Where each other service listens, by name: the only way names become addresses.
    package var peers = PeerMap()
    /// How long to wait for a next hop to accept a connection before answering 504 `timeout`.
    package var connectTimeout = 2_000
    /// How long to wait for a next hop's complete response before answering 504.
    package var responseTimeout = 30_000
    /// How long a client may take to send a complete request before it gets 408.
    package var requestTimeout = 10_000
    /// How long the addresses a peer's name resolved to are used before it is looked up again
    /// (a failed connection looks it up again at once).
    package var nameTTL = 10_000
    /// How long a response may wait for its client to read it before the connection is closed.
    package var writeTimeout = 10_000
    /// Most bytes of requests and responses held in memory at once, host-wide (request bodies,
    /// bytes a client sent ahead, responses the client has not read yet); beyond it requests get
    /// 503 `overloaded` with Retry-After.
    package var maxBufferedBytes = 256 * 1024 * 1024
    /// Largest request line plus header fields accepted (431 beyond).
    package var maxHeaderBytes = 16 * 1024
    /// Largest request or relayed response body accepted (413 beyond).
    package var maxBodyBytes = 8 * 1024 * 1024
    /// Most requests processed at once; beyond it the host answers 503 `overloaded` with
    /// Retry-After instead of queueing (or dropping) them.
    package var maxInFlight = 512
    /// After a next hop refused the connection, keep trying this long (ms) before answering 502:
    /// rides over a service restarting on its port without letting a dead one stall callers.
    package var connectRetry = 250
    /// Most service calls one request may make, route and arguments together, nested arguments
    /// included (400 bad-route beyond).
    package var maxHops = 64
    /// Most times one request may run any one service, this one included (400 bad-route
    /// beyond): a route that revisits a service holds one of its in-flight slots per visit, so
    /// this bounds what one request can take of a host.
    package var maxVisits = 4
    /// Accept only the route and arguments of main's dataflow: clients cannot choose what runs
    /// (for a service exposed to untrusted clients). Dyninka-Deadline still applies.
    package var fixedRoutes = false
    /// The app's key file (hex): hops of the app sign with it, and requests without a valid
    /// signature are a client's (see AppKey). Set by `dyninka run` and the deploy manifests.
    package var appKeyFile: String?
    /// The app's key itself (hex), when no file is given (DYNINKA_APP_KEY, from a Secret).
    package var appKey: String?
    /// With an app key: whether clients (unsigned requests) may run main's chain here; nil: only
    /// at the app's entry service.
    package var publicService: Bool?
    /// With an app key: routes a client may also send here (in route syntax), besides main's.
    package var allowedRoutes: [String] = []
    /// After SIGTERM, keep accepting for this long while /readyz answers 503, so that load
    /// balancers stop sending first (Kubernetes sets it; 0 stops accepting at once).
    package var drainDelay = 0
    /// After SIGTERM, the longest to wait for in-flight requests before exiting anyway.
    package var drainTimeout = 30_000
    /// Log every request (method, target, status, duration) at info level.
    package var accessLog = false
    /// Exit when the parent process goes away (set by `dyninka run`, so that no service outlives it).
    package var exitWithParent = false
    /// Least severe level logged: debug, info, warning, error.
    package var logLevel = LogLevel.info
    /// Hot swap, the old side: on SIGUSR1 stop accepting at once, write the service's @Placed
    /// state here as soon as no call runs and no request is partly received, relay what is in
    /// flight and exit (see HandOver.swift).
    package var stateOut: String?
    /// Hot swap, the old side: the longest a request partly received at SIGUSR1 may take to
    /// come whole before it is refused (503) so that the state can go.
    package var handoverTimeout = 3_000
    /// Hot swap, the new side: hold every POST until the old instance's state appears here, then
    /// restore it (or start fresh when its declaration changed) and serve.
    package var stateIn: String?
    /// With `stateIn`: the longest to hold requests for the old instance to begin its hand-over;
    /// once it has, the new side waits as long as the old side announced it may take.
    package var stateWait = 10_000
    /// Listen on `host` even when the machine does not have that address yet (IP_FREEBIND): a
    /// moving service's new host listens before its address arrives on its node.
    package var freeBind = false

    /// main's chain for this service, replaceable while it runs: the default route on the first
    /// line, the default arguments (Dyninka-Args syntax) on the second; read at start when the
    /// file exists, and again on SIGHUP.
    package var routeFile: String?
    /// Append the spans of recorded traces to this file as OTLP/JSON, a batch per line.
    package var otlpFile: String?
    /// POST the spans of recorded traces as OTLP/JSON to this OTLP/HTTP receiver
    /// (http://HOST:PORT[/v1/traces]).
    package var otlpEndpoint: String?
    /// Most traces this host begins recording per second (a request without `traceparent`);
    /// requests whose `traceparent` is sampled are always recorded.
    package var traceRate = 100

    package init(appPath: String, service: String) {
        self.appPath = appPath
        self.service = service
    }
}
