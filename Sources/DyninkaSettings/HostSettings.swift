/// The values of every setting of a `dyninka-host` process, typed, with their defaults: the one
/// place a default is written. What each setting is called, where it comes from and what it
/// takes is in `HostSetting.all`; the host builds its configuration from this value, and every
/// launcher (`dyninka run`, the test bed, the Kubernetes and Marathon manifests) renders its
/// command line or environment from it. Durations are milliseconds, sizes bytes.
package struct HostSettings: Sendable, Equatable {
    /// Path of the app library (`dyninka build` output) to dlopen.
    package var app: String?
    /// The service this process runs.
    package var service: String?
    /// Numeric address to listen on; loopback by default so nothing is exposed by accident.
    package var host = "127.0.0.1"
    /// Port to listen on; 0 lets the kernel pick (the chosen port is printed).
    package var port = 8080
    /// `NAME=HOST:PORT` entries: where other services listen.
    package var peers: [String] = []
    /// Fusion: more addresses to listen on, NAME=HOST:PORT, where `/` runs NAME.
    package var alsoListen: [String] = []
    /// A JSON placement file: `{"services": {"NAME": "HOST:PORT"}, "template": "..."}`.
    package var placement: String?
    /// The address of services not listed, with `{name}` for the service's DNS-safe name.
    package var peerTemplate: String?
    /// How long a peer name's resolved addresses are used before it is looked up again.
    package var nameTTL = 10_000
    /// How long a next hop may take to accept a connection (else 504 `timeout`).
    package var connectTimeout = 2_000
    /// How long a next hop may take to answer completely (else 504).
    package var responseTimeout = 30_000
    /// How long a client may take to send a complete request (else 408).
    package var requestTimeout = 10_000
    /// How long a response may wait for its client to read it (then the connection closes).
    package var writeTimeout = 10_000
    /// How long to keep retrying a next hop that refused the connection (else 502).
    package var connectRetry = 250
    /// Largest request line plus header fields (else 431).
    package var maxHeaderBytes = 16 * 1024
    /// Largest request or relayed response body (else 413, or 502 for a response).
    package var maxBodyBytes = 8 * 1024 * 1024
    /// Most bytes of requests and responses held at once, host-wide (else 503 `overloaded`).
    package var maxBufferedBytes = 256 * 1024 * 1024
    /// Most requests in flight until their response is written (else 503 `overloaded`).
    package var maxInFlight = 512
    /// Most service calls one request may make, route and arguments together (else 400).
    package var maxHops = 64
    /// Most times one request may run any one service (else 400 `bad-route`).
    package var maxVisits = 4
    /// Without an app key: accept only main's route and arguments.
    package var fixedRoutes = false
    /// The app key's file (hex).
    package var appKeyFile: String?
    /// The app key itself (hex), when no file is given: from a Secret, never a flag.
    package var appKey: String?
    /// With a key: whether clients may run main's chain here; nil: only at the app's entry.
    package var publicService: Bool?
    /// With a key: routes a client may also send here (route syntax).
    package var allowedRoutes: [String] = []
    /// After SIGTERM, keep accepting this long while /readyz answers 503.
    package var drainDelay = 0
    /// After SIGTERM, the longest wait for in-flight requests.
    package var drainTimeout = 30_000
    /// Log every request.
    package var accessLog = false
    /// Drain and exit when the parent process goes away.
    package var exitWithParent = false
    /// The least severe level logged: debug, info, warning or error.
    package var logLevel = "info"
    /// main's chain for this service, replaceable while it runs.
    package var routeFile: String?
    /// Hand-over, old side: where the @Placed state goes on SIGUSR1.
    package var stateOut: String?
    /// Hand-over, old side: how long a partly received request may take before it is refused.
    package var handoverTimeout = 3_000
    /// Hand-over, new side: where the old instance's state appears.
    package var stateIn: String?
    /// Hand-over, new side: how long to wait for the old instance to begin.
    package var stateWait = 10_000
    /// Listen on `host` before this machine has that address (IP_FREEBIND).
    package var freeBind = false
    /// Pod hand-over: the control port (0: none), where a successor asks for the state.
    package var controlPort = 0
    /// Pod hand-over, new side: NAME:PORT of the predecessors' control listeners.
    package var handoverFrom: String?
    /// This instance's own address, as its successor or predecessor sees it.
    package var podIP: String?
    /// Checkpoint store of the @Placed state (`redis://HOST:PORT[/PREFIX]`).
    package var checkpoint: String?
    /// Milliseconds between checkpoint writes; 0: before each answer.
    package var checkpointInterval = 0
    /// Append recorded spans to this file as OTLP/JSON.
    package var otlpFile: String?
    /// POST recorded spans as OTLP/JSON to this OTLP/HTTP receiver.
    package var otlpEndpoint: String?
    /// Most traces a second this host begins recording.
    package var traceRate = 100

    /// Every setting at its default.
    package init() {}

    /// Settings from the DYNINKA_* variables in `environment` over the defaults (empty values
    /// count as unset). A bad value is an error naming the flag of the same meaning.
    /// `except`: settings given otherwise (as flags), whose variables are not read.
    package static func fromEnvironment(_ environment: [String: String], except given: [HostSetting] = []) throws(SettingError) -> HostSettings {
        var settings = HostSettings()
        for setting in HostSetting.all where !given.contains(where: { $0.variable == setting.variable }) {
            guard let variable = setting.variable, let text = environment[variable], !text.isEmpty else { continue }
            try setting.assign(text, to: &settings)
        }
        return settings
    }

    /// The command-line flags for the settings that differ from their defaults (or, with
    /// `only`, for exactly those settings), in the table's order: what a launcher appends to
    /// `dyninka-host serve`. Settings without a flag (the key itself) are left out.
    package func arguments(only: [HostSetting]? = nil) -> [String] {
        (only ?? HostSetting.all.filter { $0.differsFromDefault(in: self) }).flatMap { $0.flagArguments(in: self) }
    }

    /// The DYNINKA_* variables for exactly `settings` (whatever their values; unset optional
    /// ones are left out), in the order given: what a manifest puts in a container's env.
    package func environment(_ settings: [HostSetting]) -> [(name: String, value: String)] {
        settings.compactMap { setting in
            guard let variable = setting.variable, let text = setting.text(in: self) else { return nil }
            return (variable, text)
        }
    }
}

/// A setting given a value it does not take; the description names the flag, what it takes and
/// what it got.
package struct SettingError: Error, CustomStringConvertible, Sendable {
    package var description: String
    package init(_ description: String) { self.description = description }
}
