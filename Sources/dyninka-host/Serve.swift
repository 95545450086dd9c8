import ArgumentParser
import DyninkaHost
import DyninkaSettings
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

                Every setting can also come from its DYNINKA_* environment variable; \
                flags win. SIGTERM or SIGINT drains: /readyz answers 503, in-flight requests finish, \
                then the process exits 0.
                """)

        @OptionGroup(title: "Settings (each also a DYNINKA_* variable; flags win)")
        var options: HostOptions

        func run() throws {
            runHost(label: "serving") {
                let configuration = try HostConfiguration(settings: options.settings(environment: ProcessInfo.processInfo.environment))
                return try ServiceHost(configuration: configuration, table: try ServiceTable(path: configuration.appPath))
            }
        }
    }
}
