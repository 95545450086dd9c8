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
        // Relative paths in it are relative to the checkout.
        var environment = file
        environment["DYNINKA_PLACEMENT"] = Self.root.appendingPathComponent(file["DYNINKA_PLACEMENT"] ?? "").path
        let configuration = try HostConfiguration.parse(flags: [:], environment: environment)
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

/// A bad setting stops the host at start with a message naming the flag, what it takes and what
/// it got, whether it came as a flag or as a DYNINKA_* variable.
@Suite struct ConfigurationErrorTests {
    private func message(flags: [String: String] = [:], environment: [String: String] = [:]) -> String? {
        do {
            _ = try HostConfiguration.parse(flags: ["app": "a.so", "service": "map"].merging(flags) { $1 }, environment: environment)
            return nil
        } catch {
            return error.description
        }
    }

    @Test(arguments: [
        (["peer-template": "no-placeholder:8080"], "--peer-template must look like '{name}.NAMESPACE.svc.cluster.local:8080', got 'no-placeholder:8080'"),
        (["peer-template": "{name}.ns"], "--peer-template must look like"),
        (["otlp-endpoint": "localhost:4318"], "--otlp-endpoint must be an OTLP/HTTP URL like http://127.0.0.1:4318/v1/traces, got 'localhost:4318'"),
        (["log-level": "loud"], "--log-level must be one of debug, info, warning, error; got 'loud'"),
        (["max-in-flight": "0"], "--max-in-flight must be a whole number in 1...1000000, got '0'"),
        (["peers": "map"], "peer 'map' is not NAME=HOST:PORT (for example map=127.0.0.1:8083)"),
        (["peers": "map=somewhere"], "peer 'map=somewhere': 'somewhere' is not HOST:PORT"),
        (["placement": "/nonexistent/placement.json"], "cannot read placement file '/nonexistent/placement.json'"),
    ])
    func badFlagsAreNamed(flags: [String: String], expected: String) {
        let text = message(flags: flags)
        #expect(text?.contains(expected) == true, "\(text ?? "accepted")")
    }

    @Test func badVariablesAreNamedLikeFlagsAndFlagsWin() {
        #expect(message(environment: ["DYNINKA_LOG_LEVEL": "loud"])?.contains("--log-level must be one of") == true)
        #expect(message(environment: ["DYNINKA_PORT": "http"])?.contains("--port must be a whole number in 0...65535, got 'http'") == true)
        #expect(message(environment: ["DYNINKA_MAX_HOPS": "-1"])?.contains("--max-hops must be a whole number in 1...1024, got '-1'") == true)
        // The flag is read instead of the variable, so a bad variable under a good flag is fine.
        #expect(message(flags: ["log-level": "error"], environment: ["DYNINKA_LOG_LEVEL": "loud"]) == nil)
        #expect(message(flags: [:], environment: [:]) == nil)
        // An empty variable counts as unset.
        #expect(message(environment: ["DYNINKA_LOG_LEVEL": ""]) == nil)
    }

    @Test func aMissingAppOrServiceSaysHowToGiveIt() throws {
        #expect(throws: HostStartupError.self) { _ = try HostConfiguration.parse(flags: ["service": "map"], environment: [:]) }
        do {
            _ = try HostConfiguration.parse(flags: ["app": "a.so"], environment: [:])
            Issue.record("a configuration without a service resolved")
        } catch {
            #expect(error.description == "no service: pass --service NAME (or set DYNINKA_SERVICE)")
        }
    }
}
