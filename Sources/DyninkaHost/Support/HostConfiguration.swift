import DyninkaSettings

/// What a dyninka-host process runs with: its `HostSettings` (every plain value, read through
/// `configuration.NAME`), checked, and what is derived from them (the peer map, the log level).
/// Durations are milliseconds, sizes bytes.
@dynamicMemberLookup
package struct HostConfiguration: Sendable {
    /// The settings as given (flags over DYNINKA_* variables over defaults).
    package var settings: HostSettings
    /// Path of the app library (`dyninka build` output) to dlopen.
    package var appPath: String
    /// The service this process runs: the first of `services`, which `POST /` runs and host-level
    /// messages name.
    package var service: String
    /// Every service this process runs (`--service a,b,c`): calls between them stay in process
    /// (fusion); each also answers at `/NAME`.
    package var services: [String]
    /// Where each other service listens, by name: the only way names become addresses (from
    /// `--placement`, `--peers` and `--peer-template`).
    package var peers = PeerMap()
    /// The least severe level logged.
    package var logLevel = LogLevel.info

    /// A configuration with every setting at its default.
    package init(appPath: String, service: String) {
        self.appPath = appPath
        self.service = service
        services = [service]
        settings = HostSettings()
        settings.app = appPath
        settings.service = service
    }

    /// Checks `settings` and derives what the host needs from them; an error names the setting,
    /// what it takes and what it got.
    package init(settings: HostSettings) throws(HostStartupError) {
        guard let app = settings.app else { throw HostStartupError("no app library: pass --app PATH (or set DYNINKA_APP)") }
        guard let service = settings.service else { throw HostStartupError("no service: pass --service NAME (or set DYNINKA_SERVICE)") }
        let names = service.split(separator: ",", omittingEmptySubsequences: false).map { String($0.filter { $0 != " " }) }
        guard !names.contains(""), Set(names).count == names.count else {
            throw HostStartupError("--service takes one name or several, comma-separated and each once (a,b,c); got '\(service)'")
        }
        self.appPath = app
        self.service = names[0]
        services = names
        self.settings = settings
        do {
            if let file = settings.placement { try peers.add(placementFile: file) }
            if !settings.peers.isEmpty { try peers.add(list: settings.peers.joined(separator: ",")) }
        } catch {
            throw HostStartupError(error.description)
        }
        if let template = settings.peerTemplate {
            guard template.contains("{name}"), PeerAddress(parsing: template.replacingOccurrences(of: "{name}", with: "x")) != nil else {
                throw HostStartupError("--peer-template must look like '{name}.NAMESPACE.svc.cluster.local:8080', got '\(template)'")
            }
            peers.template = template
        }
        if let endpoint = settings.otlpEndpoint, OTLP.endpoint(endpoint) == nil {
            throw HostStartupError("--otlp-endpoint must be an OTLP/HTTP URL like http://127.0.0.1:4318/v1/traces, got '\(endpoint)'")
        }
        guard let level = LogLevel(name: settings.logLevel) else {
            throw HostStartupError("--log-level must be one of debug, info, warning, error; got '\(settings.logLevel)'")
        }
        logLevel = level
        if settings.appKeyFile != nil { self.settings.appKey = nil }
    }

    /// Builds a configuration from the DYNINKA_* variables alone (a container's env, a systemd
    /// EnvironmentFile).
    package init(environment: [String: String]) throws(HostStartupError) {
        let settings: HostSettings
        do throws(SettingError) { settings = try HostSettings.fromEnvironment(environment) } catch { throw HostStartupError(error.description) }
        try self.init(settings: settings)
    }

    /// A plain setting, read or written by its name: `configuration.maxInFlight`.
    package subscript<Value>(dynamicMember path: WritableKeyPath<HostSettings, Value>) -> Value {
        get { settings[keyPath: path] }
        set { settings[keyPath: path] = newValue }
    }
}
