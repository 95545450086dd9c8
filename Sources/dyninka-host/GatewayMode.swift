import ArgumentParser
import DyninkaHost
import Foundation

extension DyninkaHostCommand {
    /// `dyninka-host gateway-mode ROLE`: the OpenFaaS-like topology, for comparison.
    struct GatewayMode: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gateway-mode",
            abstract: "Run one process of the gateway topology (the comparison with point to point).",
            discussion: """
                Roles:
                  gateway       proxies POST /function/NAME to NAME's instance
                  function      runs one service and never forwards
                  orchestrator  runs main's chain, each step through the gateway

                Same services, table, payloads and keep-alive policy as point to \
                point: only the topology differs. `dyninka run APP.swift --gateway` \
                starts all of it.

                Example:
                  dyninka-host gateway-mode function --app libApp.so --service map \\
                      --port 9003
                  dyninka-host gateway-mode gateway --port 9000 \\
                      --functions map=127.0.0.1:9003,orchestrator=127.0.0.1:9009
                  dyninka-host gateway-mode orchestrator --app libApp.so --port 9009 \\
                      --gateway 127.0.0.1:9000
                """)

        enum Role: String, ExpressibleByArgument, CaseIterable { case gateway, function, orchestrator }

        @Argument(help: "gateway, function or orchestrator.")
        var role: Role
        @Option(help: "App library (function, orchestrator).")
        var app: String?
        @Option(help: "Service to run (function).")
        var service: String?
        @Option(help: "Numeric IP address to listen on (default 127.0.0.1).")
        var host: String?
        @Option(help: "Port; 0 picks a free one (default 8080).")
        var port: Int?
        @Option(help: "Where each function instance listens: NAME=HOST:PORT,... (gateway).")
        var functions: [String] = []
        @Option(help: "Where the gateway listens, HOST:PORT (orchestrator).")
        var gateway: String?
        @Option(help: "Milliseconds to wait for a connection before 504 (default 2000).")
        var connectTimeout: Int?
        @Option(help: "Milliseconds to wait for a response before 504 (default 30000).")
        var responseTimeout: Int?
        @Option(help: "Most requests processed at once; beyond it 503 overloaded (default 512).")
        var maxInFlight: Int?
        @Option(help: "debug, info, warning or error (default info).")
        var logLevel: String?
        @Flag(help: "Exit when the parent process exits; `dyninka run` sets it.")
        var exitWithParent = false
        @OptionGroup(title: "Tracing (W3C traceparent is always continued; spans are recorded only with an exporter)")
        var tracing: TraceOptions

        func validate() throws {
            switch role {
            case .gateway where functions.isEmpty:
                throw ValidationError("the gateway needs --functions NAME=HOST:PORT,...")
            case .function where app == nil || service == nil:
                throw ValidationError("a function instance needs --app and --service")
            case .orchestrator where app == nil || gateway == nil:
                throw ValidationError("the orchestrator needs --app and --gateway HOST:PORT")
            default: break
            }
        }

        func run() throws {
            var flags: [String: String] = ["app": app ?? "-", "service": service ?? role.rawValue]
            flags["host"] = host
            flags["port"] = port.map(String.init)
            flags["connect-timeout"] = connectTimeout.map(String.init)
            flags["response-timeout"] = responseTimeout.map(String.init)
            flags["log-level"] = logLevel
            flags["max-in-flight"] = maxInFlight.map(String.init)
            if exitWithParent { flags["exit-with-parent"] = "true" }
            tracing.add(to: &flags)
            runHost(label: role.rawValue) {
                let configuration = try HostConfiguration.resolve(flags: flags, environment: ProcessInfo.processInfo.environment)
                switch role {
                case .gateway:
                    var peers = PeerMap()
                    do throws(PeerError) { try peers.add(list: functions.joined(separator: ",")) } catch { throw HostStartupError(error.description) }
                    return try ServiceHost(configuration: configuration, table: nil, role: .gateway(functions: peers))
                case .function:
                    return try ServiceHost(configuration: configuration, table: try ServiceTable(path: configuration.appPath), role: .function)
                case .orchestrator:
                    guard let address = PeerAddress(parsing: gateway!) else { throw HostStartupError("--gateway must be HOST:PORT") }
                    return try ServiceHost(configuration: configuration, table: try ServiceTable(path: configuration.appPath),
                                           role: .orchestrator(gateway: address))
                }
            }
        }
    }
}
