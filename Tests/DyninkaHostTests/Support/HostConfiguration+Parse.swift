import ArgumentParser
import DyninkaSettings
@testable import DyninkaHost

extension HostConfiguration {
    /// A configuration as `dyninka-host serve` makes one: `flags` (`name: value`, "true" for a
    /// bare flag) parsed by `HostOptions`, over `environment`, checked.
    static func parse(flags: [String: String], environment: [String: String]) throws(HostStartupError) -> HostConfiguration {
        var arguments: [String] = []
        for (name, value) in flags.sorted(by: { $0.key < $1.key }) {
            arguments += value == "true" ? ["--\(name)"] : ["--\(name)", value]
        }
        return try parse(arguments: arguments, environment: environment)
    }

    /// A configuration from a `dyninka-host serve` command line (without `serve`).
    static func parse(arguments: [String], environment: [String: String] = [:]) throws(HostStartupError) -> HostConfiguration {
        let options: HostOptions
        do { options = try HostOptions.parse(arguments) } catch { throw HostStartupError(HostOptions.message(for: error)) }
        let settings: HostSettings
        do { settings = try options.settings(environment: environment) } catch { throw HostStartupError(error.description) }
        return try HostConfiguration(settings: settings)
    }
}
