import DyninkaCompiler
import Foundation

/// A process the app needs beside its services, declared in `dyninka.json` next to the app file:
/// `{"sidecars": [{"name": "sensor", "command": ["python3", "sensor.py", "--port", "{port}"],
/// "health": "/healthz", "env": "SENSOR_URL"}]}`. `{port}` is replaced by a free port; `env`
/// names the variable that tells the services the sidecar's URL.
package struct SidecarSpec: Codable, Sendable {
    package var name: String
    /// `{port}` and `{host}` (the address to listen on) are filled in.
    package var command: [String]
    package var health: String?
    package var env: String?
    /// On a test bed: where the sidecar runs, as for `@Service(node:label:near:)`.
    package var node: String?
    package var label: String?
    package var near: String?
    /// On a cluster: the sidecar's image, for a registry of yours. Without it, `deploy --apply` on
    /// a test bed's cluster builds one from this machine's files (`ContainerImage.buildSidecar`).
    package var image: String?

    var placement: PlacementIR? {
        node == nil && label == nil && near == nil ? nil : PlacementIR(node: node, label: label, near: near)
    }
}

/// Settings read from `dyninka.json` beside the app file (all optional).
package struct AppSettings: Codable, Sendable {
    package var sidecars: [SidecarSpec]?

    package init(sidecars: [SidecarSpec]? = nil) { self.sidecars = sidecars }

    /// Reads `dyninka.json` in `directory`; no file means no settings.
    package static func load(directory: String) throws -> AppSettings {
        let path = directory + "/dyninka.json"
        guard FileManager.default.fileExists(atPath: path) else { return AppSettings() }
        do {
            return try JSONDecoder().decode(AppSettings.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw RunFailure(description: "\(path) is not valid: \(error)")
        }
    }
}

/// Why `dyninka run` could not start or keep the app running.
package struct RunFailure: Error, CustomStringConvertible, Sendable {
    package var description: String
    package init(description: String) { self.description = description }
}
