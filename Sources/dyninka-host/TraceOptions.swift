import ArgumentParser

/// The tracing options every host role takes.
struct TraceOptions: ParsableArguments {
    @Option(help: "Append the spans of recorded traces to this file as OTLP/JSON, one batch per line (env DYNINKA_OTLP_FILE).")
    var otlpFile: String?
    @Option(help: "POST the spans of recorded traces as OTLP/JSON to this OTLP/HTTP receiver, e.g. http://127.0.0.1:4318/v1/traces (env DYNINKA_OTLP_ENDPOINT).")
    var otlpEndpoint: String?
    @Option(help: "Most traces this host begins recording per second, for requests without traceparent; a sampled traceparent is always recorded (default 100).")
    var traceRate: Int?

    /// Adds the options given to the host's flags.
    func add(to flags: inout [String: String]) {
        flags["otlp-file"] = otlpFile
        flags["otlp-endpoint"] = otlpEndpoint
        flags["trace-rate"] = traceRate.map(String.init)
    }
}
