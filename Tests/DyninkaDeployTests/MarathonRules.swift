import Foundation

/// Marathon's app definition rules (REST API v2, `types/app.raml` and the types it uses:
/// network, healthCheck, readinessCheck, constraint), for the fields `dyninka deploy` emits. No
/// Marathon runs here, so its JSON is checked against these rules instead: a field not listed is
/// an error (a typo would be one), as are values outside their types, ranges and enums.
enum MarathonRules {
    static let pathID = try! NSRegularExpression(pattern: #"^(/?((\.\.)|(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9]))/?)+$"#)
    static let legacyName = try! NSRegularExpression(pattern: "^[a-z0-9]([a-z0-9-]*[a-z0-9]+)*$")
    static let portName = try! NSRegularExpression(pattern: "^[a-z][-a-z0-9]*$")

    static func matches(_ regex: NSRegularExpression, _ text: String) -> Bool {
        regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }

    /// Every rule an app breaks, as "APP-ID: what".
    static func violations(group: [String: Any]) -> [String] {
        var found: [String] = []
        guard let id = group["id"] as? String, matches(pathID, id) else { return ["group id is not a Marathon path id"] }
        for key in group.keys where !["id", "apps"].contains(key) { found.append("group: unknown field \(key)") }
        for app in group["apps"] as? [[String: Any]] ?? [] { found += violations(app: app) }
        return found
    }

    static func violations(app: [String: Any]) -> [String] {
        let id = app["id"] as? String ?? "?"
        var found: [String] = []
        func fail(_ what: String) { found.append("\(id): \(what)") }
        func number(_ key: String, in object: [String: Any], minimum: Double, maximum: Double = .infinity, integer: Bool = false) {
            guard let value = object[key] else { return }
            guard type(of: value) != Bool.self, let n = value as? NSNumber else { return fail("\(key) must be a number") }
            if integer && n.doubleValue != n.doubleValue.rounded() { fail("\(key) must be an integer") }
            if n.doubleValue < minimum || n.doubleValue > maximum { fail("\(key) \(n) is outside \(minimum)...\(maximum)") }
        }
        func strings(_ key: String) {
            guard let value = app[key] else { return }
            guard let map = value as? [String: Any], map.values.allSatisfy({ $0 is String }) else { return fail("\(key) must map names to strings") }
        }
        let known: Set<String> = ["id", "cmd", "args", "cpus", "mem", "disk", "gpus", "instances", "container", "networks", "portDefinitions",
                                  "requirePorts", "healthChecks", "readinessChecks", "upgradeStrategy", "taskKillGracePeriodSeconds", "env",
                                  "labels", "constraints", "backoffSeconds", "backoffFactor", "maxLaunchDelaySeconds", "user", "fetch",
                                  "dependencies", "acceptedResourceRoles", "killSelection", "unreachableStrategy", "secrets"]
        for key in app.keys where !known.contains(key) { fail("unknown field \(key)") }
        if !matches(pathID, id) { fail("id is not a Marathon path id") }
        if let cmd = app["cmd"] { if (cmd as? String)?.isEmpty != false { fail("cmd must be a non-empty string") } }
        if app["cmd"] != nil && app["args"] != nil { fail("cmd and args together") }
        if app["cmd"] == nil && app["args"] == nil && app["container"] == nil { fail("no cmd, args or container") }
        number("cpus", in: app, minimum: 0.001)
        number("mem", in: app, minimum: 0)
        number("instances", in: app, minimum: 0, integer: true)
        number("taskKillGracePeriodSeconds", in: app, minimum: 0, integer: true)
        if let container = app["container"] as? [String: Any] {
            if !["DOCKER", "MESOS"].contains(container["type"] as? String ?? "") { fail("container.type must be DOCKER or MESOS") }
            if let docker = container["docker"] as? [String: Any], (docker["image"] as? String)?.isEmpty != false { fail("container.docker.image is empty") }
        }
        for network in app["networks"] as? [[String: Any]] ?? [] {
            if !["container", "container/bridge", "host"].contains(network["mode"] as? String ?? "container") { fail("networks[].mode") }
        }
        let ports = app["portDefinitions"] as? [[String: Any]] ?? []
        for port in ports {
            number("port", in: port, minimum: 0, maximum: 65535, integer: true)
            if !["tcp", "udp", "udp,tcp"].contains(port["protocol"] as? String ?? "tcp") { fail("portDefinitions[].protocol") }
            if let name = port["name"] as? String, !matches(legacyName, name) { fail("portDefinitions[].name \(name)") }
        }
        if let requirePorts = app["requirePorts"], !(requirePorts is Bool) { fail("requirePorts must be a boolean") }
        for check in app["healthChecks"] as? [[String: Any]] ?? [] {
            let protocols = ["HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_TCP", "MESOS_HTTP", "MESOS_HTTPS"]
            if !protocols.contains(check["protocol"] as? String ?? "HTTP") { fail("healthChecks[].protocol") }
            for key in ["gracePeriodSeconds", "intervalSeconds", "timeoutSeconds", "maxConsecutiveFailures", "delaySeconds"] {
                number(key, in: check, minimum: 0, integer: true)
            }
            if let index = check["portIndex"] as? Int, index >= ports.count { fail("healthChecks[].portIndex \(index) names no port") }
        }
        for check in app["readinessChecks"] as? [[String: Any]] ?? [] {
            if !["HTTP", "HTTPS"].contains(check["protocol"] as? String ?? "HTTP") { fail("readinessChecks[].protocol") }
            number("intervalSeconds", in: check, minimum: 0, integer: true)
            let interval = check["intervalSeconds"] as? Int ?? 30, timeout = check["timeoutSeconds"] as? Int ?? 10
            if timeout >= interval { fail("readinessChecks[].timeoutSeconds \(timeout) must be smaller than intervalSeconds \(interval)") }
            if let name = check["portName"] as? String {
                if !matches(portName, name) { fail("readinessChecks[].portName \(name)") }
                if !ports.contains(where: { $0["name"] as? String == name }) { fail("readinessChecks[].portName \(name) names no port") }
            }
        }
        if let strategy = app["upgradeStrategy"] as? [String: Any] {
            number("minimumHealthCapacity", in: strategy, minimum: 0, maximum: 1)
            number("maximumOverCapacity", in: strategy, minimum: 0, maximum: 1)
        }
        strings("env")
        strings("labels")
        for constraint in app["constraints"] as? [Any] ?? [] {
            guard let parts = constraint as? [String], (2...3).contains(parts.count) else { fail("constraints[] must be 2 or 3 strings"); continue }
            if !["UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS"].contains(parts[1]) { fail("constraint operator \(parts[1])") }
        }
        return found
    }
}
