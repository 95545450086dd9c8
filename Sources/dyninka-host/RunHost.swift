import DyninkaHost
import DyninkaSettings
import Foundation

/// Builds a host, binds it, announces its address on stdout (one line, for whoever started us:
/// tests, `dyninka run`), and serves until it drains. Startup errors exit 2 with the message.
func runHost(label: String, _ make: () throws -> ServiceHost) -> Never {
    do {
        let host = try make()
        try host.bind()
        FileHandle.standardOutput.write(Data("dyninka-host: \(label) \(host.configuration.services.joined(separator: ",")) on http://\(host.boundAddress)\n".utf8))
        try host.run()
        exit(0)
    } catch let error as HostStartupError {
        failStartup(error.description)
    } catch let error as SettingError {
        failStartup(error.description)
    } catch let error as TableLoadError {
        failStartup(error.description)
    } catch {
        failStartup("\(error)")
    }
}

/// Prints a startup error and exits 2.
func failStartup(_ message: String) -> Never {
    FileHandle.standardError.write(Data("dyninka-host: error: \(message)\n".utf8))
    exit(2)
}
