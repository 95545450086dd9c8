import Foundation
import Testing
@testable import DyninkaHost

/// The example files in configs/ are read by the code that uses such files, so they stay true.
@Suite struct ConfigsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// KEY=VALUE lines of an environment file (comments and blank lines left out).
    static func environment(_ path: String) throws -> [String: String] {
        var values: [String: String] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") where !line.hasPrefix("#") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return values
    }

    @Test func theHostEnvironmentExampleResolvesAndNamesEveryVariable() throws {
        let path = Self.root.appendingPathComponent("configs/host.env").path
        let file = try Self.environment(path)
        // Every variable the host reads appears in the example, set or commented out.
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for (name, _) in HostConfiguration.environmentVariables {
            #expect(text.contains(name), "configs/host.env does not mention \(name)")
        }
        // Relative paths in it are relative to the checkout.
        var environment = file
        environment["DYNINKA_PLACEMENT"] = Self.root.appendingPathComponent(file["DYNINKA_PLACEMENT"] ?? "").path
        let configuration = try HostConfiguration.resolve(flags: [:], environment: environment)
        let defaults = HostConfiguration(appPath: "", service: "")
        #expect(configuration.service == "map")
        #expect(configuration.maxVisits == defaults.maxVisits)
        #expect(configuration.maxBufferedBytes == defaults.maxBufferedBytes)
        #expect(configuration.writeTimeout == defaults.writeTimeout)
        #expect(configuration.maxInFlight == defaults.maxInFlight)
        #expect(configuration.fixedRoutes == defaults.fixedRoutes)
        #expect(configuration.peers.address(of: "movingAvg") == PeerAddress(host: "127.0.0.1", port: 8084), "--peers wins over the file")
        #expect(configuration.peers.address(of: "get") == PeerAddress(host: "127.0.0.1", port: 8081), "from the placement file")
    }

    @Test func thePlacementExampleLoads() throws {
        var peers = PeerMap()
        try peers.add(placementFile: Self.root.appendingPathComponent("configs/placement.example.json").path)
        #expect(peers.address(of: "movingAvg") == PeerAddress(host: "edge-1.local", port: 8084))
        #expect(peers.address(of: "alert") == PeerAddress(host: "alert.default.svc.cluster.local", port: 8080))
    }
}
