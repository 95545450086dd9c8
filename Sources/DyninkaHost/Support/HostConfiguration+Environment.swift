extension HostConfiguration {
    /// The environment variables a host reads, with what each sets (flags take precedence).
    package static let environmentVariables: [(name: String, meaning: String)] = [
        ("DYNINKA_APP", "--app"), ("DYNINKA_SERVICE", "--service"), ("DYNINKA_HOST", "--host"),
        ("DYNINKA_PORT", "--port"), ("DYNINKA_PEERS", "--peers"), ("DYNINKA_PLACEMENT", "--placement"),
        ("DYNINKA_PEER_TEMPLATE", "--peer-template"), ("DYNINKA_CONNECT_TIMEOUT_MS", "--connect-timeout"),
        ("DYNINKA_RESPONSE_TIMEOUT_MS", "--response-timeout"), ("DYNINKA_REQUEST_TIMEOUT_MS", "--request-timeout"),
        ("DYNINKA_WRITE_TIMEOUT_MS", "--write-timeout"), ("DYNINKA_MAX_BUFFERED_BYTES", "--max-buffered-bytes"),
        ("DYNINKA_MAX_VISITS", "--max-visits"), ("DYNINKA_FIXED_ROUTES", "--fixed-routes"),
        ("DYNINKA_NAME_TTL_MS", "--name-ttl"),
        ("DYNINKA_MAX_HEADER_BYTES", "--max-header-bytes"), ("DYNINKA_MAX_BODY_BYTES", "--max-body-bytes"),
        ("DYNINKA_MAX_HOPS", "--max-hops"), ("DYNINKA_MAX_IN_FLIGHT", "--max-in-flight"),
        ("DYNINKA_CONNECT_RETRY_MS", "--connect-retry"), ("DYNINKA_DRAIN_DELAY_MS", "--drain-delay"),
        ("DYNINKA_DRAIN_TIMEOUT_MS", "--drain-timeout"), ("DYNINKA_ACCESS_LOG", "--access-log"),
        ("DYNINKA_LOG_LEVEL", "--log-level"), ("DYNINKA_OTLP_FILE", "--otlp-file"),
        ("DYNINKA_OTLP_ENDPOINT", "--otlp-endpoint"), ("DYNINKA_TRACE_RATE", "--trace-rate"),
        ("DYNINKA_APP_KEY_FILE", "--app-key-file"), ("DYNINKA_APP_KEY", "the app key itself (hex, from a Secret), when no --app-key-file"),
        ("DYNINKA_PUBLIC", "--public"), ("DYNINKA_ALLOW_ROUTES", "--allow-route (routes separated by ';')"),
    ]

    /// Builds a configuration from flags (`flags[name]`, without dashes) over DYNINKA_* variables
    /// over defaults. Unknown names are ignored; bad values are errors naming the flag.
    package static func resolve(flags: [String: String], environment: [String: String]) throws(HostStartupError) -> HostConfiguration {
        func value(_ flag: String) -> String? {
            if let v = flags[flag] { return v }
            let variable = environmentVariables.first { $0.meaning == "--\(flag)" }?.name
            return variable.flatMap { environment[$0] }.flatMap { $0.isEmpty ? nil : $0 }
        }
        func integer(_ flag: String, _ range: ClosedRange<Int>) throws(HostStartupError) -> Int? {
            guard let text = value(flag) else { return nil }
            guard let number = Int(text), range.contains(number) else {
                throw HostStartupError("--\(flag) must be a whole number in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
            }
            return number
        }
        guard let app = value("app") else { throw HostStartupError("no app library: pass --app PATH (or set DYNINKA_APP)") }
        guard let service = value("service") else { throw HostStartupError("no service: pass --service NAME (or set DYNINKA_SERVICE)") }
        var c = HostConfiguration(appPath: app, service: service)
        if let host = value("host") { c.host = host }
        if let port = try integer("port", 0...65535) { c.port = port }
        do {
            if let file = value("placement") { try c.peers.add(placementFile: file) }
            if let list = value("peers") { try c.peers.add(list: list) }
        } catch {
            throw HostStartupError(error.description)
        }
        if let template = value("peer-template") {
            guard template.contains("{name}"), PeerAddress(parsing: template.replacingOccurrences(of: "{name}", with: "x")) != nil else {
                throw HostStartupError("--peer-template must look like '{name}.NAMESPACE.svc.cluster.local:8080', got '\(template)'")
            }
            c.peers.template = template
        }
        if let v = try integer("connect-timeout", 1...3_600_000) { c.connectTimeout = v }
        if let v = try integer("response-timeout", 1...3_600_000) { c.responseTimeout = v }
        if let v = try integer("request-timeout", 1...3_600_000) { c.requestTimeout = v }
        if let v = try integer("write-timeout", 1...3_600_000) { c.writeTimeout = v }
        if let v = try integer("max-buffered-bytes", 65_536...(1 << 40)) { c.maxBufferedBytes = v }
        if let v = try integer("max-visits", 1...1024) { c.maxVisits = v }
        if let v = try integer("name-ttl", 0...3_600_000) { c.nameTTL = v }
        if let v = value("fixed-routes") { c.fixedRoutes = ["1", "true", "yes", "on"].contains(v.lowercased()) }
        if let v = try integer("max-header-bytes", 1024...1_048_576) { c.maxHeaderBytes = v }
        if let v = try integer("max-body-bytes", 1...1_073_741_824) { c.maxBodyBytes = v }
        if let v = try integer("max-hops", 1...1024) { c.maxHops = v }
        if let v = try integer("max-in-flight", 1...1_000_000) { c.maxInFlight = v }
        if let v = try integer("connect-retry", 0...60_000) { c.connectRetry = v }
        if let v = try integer("drain-delay", 0...3_600_000) { c.drainDelay = v }
        if let v = try integer("drain-timeout", 0...3_600_000) { c.drainTimeout = v }
        if let v = value("access-log") { c.accessLog = ["1", "true", "yes", "on"].contains(v.lowercased()) }
        if value("exit-with-parent") == "true" { c.exitWithParent = true }
        c.stateOut = flags["state-out"]
        c.stateIn = flags["state-in"]
        if flags["free-bind"] == "true" { c.freeBind = true }
        c.routeFile = flags["route-file"]
        if let v = try integer("state-wait", 0...600_000) { c.stateWait = v }
        if let v = try integer("handover-timeout", 0...600_000) { c.handoverTimeout = v }
        c.otlpFile = value("otlp-file")
        if let endpoint = value("otlp-endpoint") {
            guard OTLP.endpoint(endpoint) != nil else {
                throw HostStartupError("--otlp-endpoint must be an OTLP/HTTP URL like http://127.0.0.1:4318/v1/traces, got '\(endpoint)'")
            }
            c.otlpEndpoint = endpoint
        }
        if let v = try integer("trace-rate", 0...1_000_000) { c.traceRate = v }
        c.appKeyFile = value("app-key-file")
        if c.appKeyFile == nil, let key = environment["DYNINKA_APP_KEY"], !key.isEmpty { c.appKey = key }
        if let v = value("public") { c.publicService = ["1", "true", "yes", "on"].contains(v.lowercased()) }
        if let routes = flags["allow-route"] ?? environment["DYNINKA_ALLOW_ROUTES"] {
            c.allowedRoutes = routes.split(separator: ";").map { String($0.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
        }
        if let v = value("log-level") {
            guard let level = LogLevel(name: v) else {
                throw HostStartupError("--log-level must be one of debug, info, warning, error; got '\(v)'")
            }
            c.logLevel = level
        }
        return c
    }
}
