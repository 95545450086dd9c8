import DyninkaCompiler
import DyninkaSettings

/// A Marathon group of app definitions (one app per service), from the IR.
package enum MarathonGroup {
    /// First fixed service port; services take consecutive ones so that peers are known up front.
    package static let basePort = 10100

    /// The group JSON, plus placement notes that Marathon cannot express.
    package static func generate(_ ir: AppIR, settings: DeploySettings) throws(DeployFailure) -> (json: String, notes: [String]) {
        let names = try ObjectNames.checked(ir)
        let group = "/\(names.app)"
        var ports: [String: Int] = [:]
        for (index, service) in ir.services.enumerated() { ports[service.name] = basePort + index }
        // Mesos-DNS names an app /GROUP/NAME as NAME-GROUP.marathon.mesos.
        func host(_ service: String) -> String { "\(ObjectNames.dns(service))-\(names.app).marathon.mesos" }
        let peers = ir.services.map { "\($0.name)=\(host($0.name)):\(ports[$0.name]!)" }.joined(separator: ",")
        var notes: [String] = []
        let apps: [Doc] = ir.services.map { service in
            let port = ports[service.name]!
            var constraints: [Doc] = []
            if let placement = service.placement {
                if let node = placement.node { constraints.append(.list([.string("hostname"), .string("CLUSTER"), .string(node)])) }
                if let label = placement.label, let eq = label.firstIndex(of: "=") {
                    constraints.append(.list([.string(String(label[..<eq])), .string("CLUSTER"), .string(String(label[label.index(after: eq)...]))]))
                }
                if let near = placement.near {
                    if let node = ir.service(near)?.placement?.node {
                        constraints.append(.list([.string("hostname"), .string("CLUSTER"), .string(node)]))
                    } else {
                        notes.append("'\(service.name)' is placed near '\(near)', which Marathon cannot express between apps; pin both with @Service(node:) to keep them together")
                    }
                }
            }
            var host = HostSettings()
            host.app = settings.libraryPath
            host.service = service.name
            host.host = "0.0.0.0"
            host.port = port
            host.peers = [peers]
            host.drainDelay = 5_000
            host.drainTimeout = 30_000
            var env: [(String, Doc)] = host.environment([.peers, .drainDelay, .drainTimeout]).map { ($0.name, .string($0.value)) }
            for (key, value) in settings.environment { env.append((key, .string(value))) }
            var app: [(String, Doc)] = [
                ("id", .string("\(group)/\(ObjectNames.dns(service.name))")),
                ("cmd", .string((["dyninka-host", "serve"] + host.arguments(only: [.app, .service, .host, .port])).joined(separator: " "))),
                ("cpus", .double(0.25)),
                ("mem", .int(256)),
                ("instances", .int(1)),
                ("container", .map([("type", .string("DOCKER")), ("docker", .map([("image", .string(settings.image))]))])),
                ("networks", .list([.map([("mode", .string("host"))])])),
                ("portDefinitions", .list([.map([("port", .int(port)), ("protocol", .string("tcp")), ("name", .string("http"))])])),
                ("requirePorts", .bool(true)),
                ("healthChecks", .list([.map([("protocol", .string("MESOS_HTTP")), ("path", .string("/healthz")), ("portIndex", .int(0)),
                                              ("gracePeriodSeconds", .int(30)), ("intervalSeconds", .int(10)),
                                              ("timeoutSeconds", .int(5)), ("maxConsecutiveFailures", .int(3))])])),
                ("readinessChecks", .list([.map([("name", .string("readyz")), ("protocol", .string("HTTP")), ("path", .string("/readyz")),
                                                 ("portName", .string("http")), ("intervalSeconds", .int(2)), ("timeoutSeconds", .int(1))])])),
                // @Placed state lives in one task: an upgrade stops it before its successor starts,
                // so that two never count apart (the state starts fresh); the others overlap.
                ("upgradeStrategy", service.placedState.isEmpty
                    ? .map([("minimumHealthCapacity", .double(1.0)), ("maximumOverCapacity", .double(1.0))])
                    : .map([("minimumHealthCapacity", .double(0.0)), ("maximumOverCapacity", .double(0.0))])),
                ("taskKillGracePeriodSeconds", .int(40)),
                ("env", .map(env)),
                ("labels", .map([("dyninka.io/code-hash", .string(service.codeHash)), ("dyninka.io/service", .string(service.name)),
                                 ("dyninka.io/app", .string(names.app))])),
            ]
            if !constraints.isEmpty { app.append(("constraints", .list(constraints))) }
            return .map(app)
        }
        notes.append("Marathon has no portable secret store, so these apps get no app key: any client that reaches a service may choose its route. Give every app DYNINKA_APP_KEY (the same 64 hex digits) through your secret store (DC/OS secrets, Vault) to have hops signed and clients held to main's chain at '\(ir.dataflow.entry)'")
        let document: Doc = .map([("id", .string(group)), ("apps", .list(apps))])
        return (document.prettyJSON() + "\n", notes)
    }

    /// The fields Marathon requires of every app, missing ones listed per app id.
    package static func missingRequiredFields(_ json: [String: Any]) -> [String] {
        var missing: [String] = []
        guard json["id"] is String, let apps = json["apps"] as? [[String: Any]] else { return ["group id or apps"] }
        for app in apps {
            let id = app["id"] as? String ?? "?"
            for field in ["id", "cpus", "mem", "instances"] where app[field] == nil { missing.append("\(id): \(field)") }
            if app["cmd"] == nil && app["container"] == nil && app["args"] == nil { missing.append("\(id): cmd, args or container") }
        }
        return missing
    }
}
