import ArgumentParser
import DyninkaHost
import DyninkaSettings
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
        @Option(help: "Where each function instance listens: NAME=HOST:PORT,... (gateway).")
        var functions: [String] = []
        @Option(help: "Where the gateway listens, HOST:PORT (orchestrator).")
        var gateway: String?
        @OptionGroup(title: "Settings (as for serve; --app for function and orchestrator, --service for function)")
        var options: HostOptions

        func validate() throws {
            switch role {
            case .gateway where functions.isEmpty:
                throw ValidationError("the gateway needs --functions NAME=HOST:PORT,...")
            case .function where options.app == nil || options.service == nil:
                throw ValidationError("a function instance needs --app and --service")
            case .orchestrator where options.app == nil || gateway == nil:
                throw ValidationError("the orchestrator needs --app and --gateway HOST:PORT")
            default: break
            }
        }

        func run() throws {
            runHost(label: role.rawValue) {
                var settings = try options.settings(environment: ProcessInfo.processInfo.environment)
                settings.app = settings.app ?? "-"
                settings.service = settings.service ?? role.rawValue
                let configuration = try HostConfiguration(settings: settings)
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
