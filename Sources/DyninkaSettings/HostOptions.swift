import ArgumentParser

/// The host's settings as command-line options: what `dyninka-host serve` and `gateway-mode`
/// include with `@OptionGroup`. Every option's name and help come from its row in
/// `HostSetting.all`; `settings(environment:)` turns what was given into `HostSettings` (flags
/// over DYNINKA_* variables over defaults) without going through text.
package struct HostOptions: ParsableArguments {
    @Option(name: .customLong(HostSetting.app.flag!), help: ArgumentHelp(HostSetting.app.helpLine))
    package var app: String?
    @Option(name: .customLong(HostSetting.service.flag!), help: ArgumentHelp(HostSetting.service.helpLine))
    package var service: String?
    @Option(name: .customLong(HostSetting.host.flag!), help: ArgumentHelp(HostSetting.host.helpLine))
    var host: String?
    @Option(name: .customLong(HostSetting.port.flag!), help: ArgumentHelp(HostSetting.port.helpLine))
    var port: Int?
    @Option(name: .customLong(HostSetting.alsoListen.flag!), help: ArgumentHelp(HostSetting.alsoListen.helpLine))
    var alsoListen: [String] = []
    @Option(name: .customLong(HostSetting.peers.flag!), help: ArgumentHelp(HostSetting.peers.helpLine))
    var peers: [String] = []
    @Option(name: .customLong(HostSetting.placement.flag!), help: ArgumentHelp(HostSetting.placement.helpLine))
    var placement: String?
    @Option(name: .customLong(HostSetting.peerTemplate.flag!), help: ArgumentHelp(HostSetting.peerTemplate.helpLine))
    var peerTemplate: String?
    @Option(name: .customLong(HostSetting.nameTTL.flag!), help: ArgumentHelp(HostSetting.nameTTL.helpLine))
    var nameTTL: Int?
    @Option(name: .customLong(HostSetting.connectTimeout.flag!), help: ArgumentHelp(HostSetting.connectTimeout.helpLine))
    var connectTimeout: Int?
    @Option(name: .customLong(HostSetting.responseTimeout.flag!), help: ArgumentHelp(HostSetting.responseTimeout.helpLine))
    var responseTimeout: Int?
    @Option(name: .customLong(HostSetting.requestTimeout.flag!), help: ArgumentHelp(HostSetting.requestTimeout.helpLine))
    var requestTimeout: Int?
    @Option(name: .customLong(HostSetting.writeTimeout.flag!), help: ArgumentHelp(HostSetting.writeTimeout.helpLine))
    var writeTimeout: Int?
    @Option(name: .customLong(HostSetting.connectRetry.flag!), help: ArgumentHelp(HostSetting.connectRetry.helpLine))
    var connectRetry: Int?
    @Option(name: .customLong(HostSetting.maxHeaderBytes.flag!), help: ArgumentHelp(HostSetting.maxHeaderBytes.helpLine))
    var maxHeaderBytes: Int?
    @Option(name: .customLong(HostSetting.maxBodyBytes.flag!), help: ArgumentHelp(HostSetting.maxBodyBytes.helpLine))
    var maxBodyBytes: Int?
    @Option(name: .customLong(HostSetting.maxBufferedBytes.flag!), help: ArgumentHelp(HostSetting.maxBufferedBytes.helpLine))
    var maxBufferedBytes: Int?
    @Option(name: .customLong(HostSetting.maxInFlight.flag!), help: ArgumentHelp(HostSetting.maxInFlight.helpLine))
    var maxInFlight: Int?
    @Option(name: .customLong(HostSetting.maxHops.flag!), help: ArgumentHelp(HostSetting.maxHops.helpLine))
    var maxHops: Int?
    @Option(name: .customLong(HostSetting.maxVisits.flag!), help: ArgumentHelp(HostSetting.maxVisits.helpLine))
    var maxVisits: Int?
    @Flag(name: .customLong(HostSetting.fixedRoutes.flag!), help: ArgumentHelp(HostSetting.fixedRoutes.helpLine))
    var fixedRoutes = false
    @Option(name: .customLong(HostSetting.appKeyFile.flag!), help: ArgumentHelp(HostSetting.appKeyFile.helpLine))
    var appKeyFile: String?
    @Flag(name: .customLong(HostSetting.publicService.flag!), help: ArgumentHelp(HostSetting.publicService.helpLine))
    var publicService = false
    @Option(name: .customLong(HostSetting.allowRoute.flag!), help: ArgumentHelp(HostSetting.allowRoute.helpLine))
    var allowRoute: [String] = []
    @Option(name: .customLong(HostSetting.drainDelay.flag!), help: ArgumentHelp(HostSetting.drainDelay.helpLine))
    var drainDelay: Int?
    @Option(name: .customLong(HostSetting.drainTimeout.flag!), help: ArgumentHelp(HostSetting.drainTimeout.helpLine))
    var drainTimeout: Int?
    @Flag(name: .customLong(HostSetting.accessLog.flag!), help: ArgumentHelp(HostSetting.accessLog.helpLine))
    var accessLog = false
    @Flag(name: .customLong(HostSetting.exitWithParent.flag!), help: ArgumentHelp(HostSetting.exitWithParent.helpLine))
    var exitWithParent = false
    @Option(name: .customLong(HostSetting.logLevel.flag!), help: ArgumentHelp(HostSetting.logLevel.helpLine))
    var logLevel: String?
    @Option(name: .customLong(HostSetting.routeFile.flag!), help: ArgumentHelp(HostSetting.routeFile.helpLine))
    var routeFile: String?
    @Option(name: .customLong(HostSetting.stateOut.flag!), help: ArgumentHelp(HostSetting.stateOut.helpLine))
    var stateOut: String?
    @Option(name: .customLong(HostSetting.handoverTimeout.flag!), help: ArgumentHelp(HostSetting.handoverTimeout.helpLine))
    var handoverTimeout: Int?
    @Option(name: .customLong(HostSetting.stateIn.flag!), help: ArgumentHelp(HostSetting.stateIn.helpLine))
    var stateIn: String?
    @Option(name: .customLong(HostSetting.stateWait.flag!), help: ArgumentHelp(HostSetting.stateWait.helpLine))
    var stateWait: Int?
    @Flag(name: .customLong(HostSetting.freeBind.flag!), help: ArgumentHelp(HostSetting.freeBind.helpLine))
    var freeBind = false
    @Option(name: .customLong(HostSetting.controlPort.flag!), help: ArgumentHelp(HostSetting.controlPort.helpLine))
    var controlPort: Int?
    @Option(name: .customLong(HostSetting.handoverFrom.flag!), help: ArgumentHelp(HostSetting.handoverFrom.helpLine))
    var handoverFrom: String?
    @Option(name: .customLong(HostSetting.podIP.flag!), help: ArgumentHelp(HostSetting.podIP.helpLine))
    var podIP: String?
    @Option(name: .customLong(HostSetting.checkpoint.flag!), help: ArgumentHelp(HostSetting.checkpoint.helpLine))
    var checkpoint: String?
    @Option(name: .customLong(HostSetting.checkpointInterval.flag!), help: ArgumentHelp(HostSetting.checkpointInterval.helpLine))
    var checkpointInterval: Int?
    @Option(name: .customLong(HostSetting.otlpFile.flag!), help: ArgumentHelp(HostSetting.otlpFile.helpLine))
    var otlpFile: String?
    @Option(name: .customLong(HostSetting.otlpEndpoint.flag!), help: ArgumentHelp(HostSetting.otlpEndpoint.helpLine))
    var otlpEndpoint: String?
    @Option(name: .customLong(HostSetting.traceRate.flag!), help: ArgumentHelp(HostSetting.traceRate.helpLine))
    var traceRate: Int?

    package init() {}

    /// The settings: each flag given, else its DYNINKA_* variable (empty counts as unset), else
    /// the default. A bad value, given either way, is an error naming the flag.
    package func settings(environment: [String: String]) throws(SettingError) -> HostSettings {
        var flags = HostSettings()
        var given: [HostSetting] = []
        func text(_ setting: HostSetting, _ value: String?) throws(SettingError) {
            guard let value else { return }
            try setting.assign(value, to: &flags)
            given.append(setting)
        }
        func number(_ setting: HostSetting, _ value: Int?) throws(SettingError) {
            guard let value else { return }
            try setting.assign(value, to: &flags)
            given.append(setting)
        }
        func on(_ setting: HostSetting, _ value: Bool) {
            guard value else { return }
            setting.assign(true, to: &flags)
            given.append(setting)
        }
        func list(_ setting: HostSetting, _ values: [String]) throws(SettingError) {
            guard !values.isEmpty else { return }
            try setting.assign(values, to: &flags)
            given.append(setting)
        }
        try text(.app, app)
        try text(.service, service)
        try text(.host, host)
        try number(.port, port)
        try list(.alsoListen, alsoListen)
        try list(.peers, peers)
        try text(.placement, placement)
        try text(.peerTemplate, peerTemplate)
        try number(.nameTTL, nameTTL)
        try number(.connectTimeout, connectTimeout)
        try number(.responseTimeout, responseTimeout)
        try number(.requestTimeout, requestTimeout)
        try number(.writeTimeout, writeTimeout)
        try number(.connectRetry, connectRetry)
        try number(.maxHeaderBytes, maxHeaderBytes)
        try number(.maxBodyBytes, maxBodyBytes)
        try number(.maxBufferedBytes, maxBufferedBytes)
        try number(.maxInFlight, maxInFlight)
        try number(.maxHops, maxHops)
        try number(.maxVisits, maxVisits)
        on(.fixedRoutes, fixedRoutes)
        try text(.appKeyFile, appKeyFile)
        on(.publicService, publicService)
        try list(.allowRoute, allowRoute)
        try number(.drainDelay, drainDelay)
        try number(.drainTimeout, drainTimeout)
        on(.accessLog, accessLog)
        on(.exitWithParent, exitWithParent)
        try text(.logLevel, logLevel)
        try text(.routeFile, routeFile)
        try text(.stateOut, stateOut)
        try number(.handoverTimeout, handoverTimeout)
        try text(.stateIn, stateIn)
        try number(.stateWait, stateWait)
        on(.freeBind, freeBind)
        try number(.controlPort, controlPort)
        try text(.handoverFrom, handoverFrom)
        try text(.podIP, podIP)
        try text(.checkpoint, checkpoint)
        try number(.checkpointInterval, checkpointInterval)
        try text(.otlpFile, otlpFile)
        try text(.otlpEndpoint, otlpEndpoint)
        try number(.traceRate, traceRate)
        var settings = try HostSettings.fromEnvironment(environment, except: given)
        for setting in given { setting.copy(from: flags, to: &settings) }
        return settings
    }
}
