import DyninkaTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The gateway topology of the fixture's default chain: function instances, an orchestrator
/// and a gateway, all real processes on 127.0.0.1.
final class GatewayTopology: @unchecked Sendable {
    var functions: [String: HostProcess] = [:]
    let gateway: HostProcess
    let orchestrator: HostProcess

    /// `extra(role)` adds arguments to the process of that function or role ("gateway", "orchestrator").
    init(_ names: [String] = ["get", "filterTemperature", "map", "movingAvg", "explode"], extra: (String) -> [String] = { _ in [] }) throws {
        for name in names {
            functions[name] = try HostProcess(name: name, commandLine: ["gateway-mode", "function", "--app", BuildProducts.fixture,
                                                                        "--service", name, "--port", "0", "--log-level", "error"] + extra(name))
        }
        let gatewayPort = freePort()
        let orchestratorPort = freePort()
        let list = functions.map { "\($0.key)=127.0.0.1:\($0.value.port)" }.joined(separator: ",")
        gateway = try HostProcess(name: "gateway", commandLine: ["gateway-mode", "gateway", "--port", String(gatewayPort),
                                                                "--functions", list + ",orchestrator=127.0.0.1:\(orchestratorPort)",
                                                                "--log-level", "error"] + extra("gateway"))
        orchestrator = try HostProcess(name: "orchestrator", commandLine: ["gateway-mode", "orchestrator", "--app", BuildProducts.fixture,
                                                                          "--port", String(orchestratorPort), "--gateway", "127.0.0.1:\(gatewayPort)",
                                                                          "--log-level", "error"] + extra("orchestrator"))
    }

    /// Runs the default dataflow through the gateway.
    func run() throws -> TestResponse { try gateway.client.post(path: "/function/orchestrator") }
}

@Suite(.serialized) struct GatewayModeTests {
    @Test func gatewayModeGivesTheSameResultsAsPointToPoint() throws {
        let topology = try GatewayTopology()
        let p2p = try HostCluster(["movingAvg", "map", "filterTemperature", "get"])
        for _ in 0..<12 {
            let viaGateway = try topology.run()
            let direct = try p2p["get"].client.post()
            #expect(viaGateway.status == direct.status)
            // Same values; JSONEncoder's key order differs from process to process.
            #expect(viaGateway.json().map(NSDictionary.init) == direct.json().map(NSDictionary.init),
                    "gateway \(viaGateway.text) vs point to point \(direct.text)")
        }
        let last = try topology.run()
        let timing = last.headers["server-timing"] ?? ""
        #expect(timing.hasPrefix("gateway;dur="), "\(timing)")
        #expect(timing.contains("orchestrator;dur="))
        #expect(timing.contains("get;dur="))
        let metrics = try topology.gateway.client.get("/metrics").text
        #expect(metrics.contains(#"gateway_function_invocation_total{function_name="get",code="200"} 13"#))
        #expect(metrics.contains(#"gateway_functions_seconds_count{function_name="orchestrator"} 13"#))
    }

    @Test(arguments: HostMode.allCases)
    func theGatewayRelaysAFunctionErrorUnchanged(mode: HostMode) throws {
        let function = try HostProcess(name: "explode", commandLine: ["gateway-mode", "function", "--app", BuildProducts.fixture,
                                                                      "--service", "explode", "--port", "0", "--log-level", "error"])
        let gateway = try mode.startGateway(functions: ["explode": function.port])
        let reading = #"{"sensor":"s","variable":"Temperature","value":30}"#
        let viaGateway = try gateway.post(reading, path: "/function/explode", extra: [("Dyninka-Parts", String(reading.utf8.count))])
        let direct = try function.client.post(reading)
        #expect(viaGateway.status == 500)
        #expect(viaGateway.body == direct.body)
        #expect(viaGateway.error?.service == "explode")
        #expect(viaGateway.error?.kind == "function")
        // A function the gateway does not know: 404, and no series named after it.
        #expect(try gateway.post(temperature, path: "/function/nope").status == 404)
        #expect(try gateway.get("/metrics").text.contains("nope") == false)
    }

    @Test(arguments: HostMode.allCases)
    func theGatewayPassesOnArgumentsAndTheDeadline(mode: HostMode) throws {
        let function = try HostProcess(name: "slow", commandLine: ["gateway-mode", "function", "--app", BuildProducts.fixture,
                                                                   "--service", "slow", "--port", "0", "--log-level", "error"])
        let gateway = try mode.startGateway(functions: ["slow": function.port])
        // slow(ms:)'s argument travels after the input, its length in Dyninka-Parts.
        let parts = ("Dyninka-Parts", "\(temperature.utf8.count),3")
        let quick = try gateway.post(temperature + "100", path: "/function/slow", extra: [parts])
        #expect(quick.status == 200 && quick.json()?["value"] as? Double == 30, "\(quick)")
        // A budget shorter than the function's work: the client hears 504 naming the function
        // when the budget is spent, not when the function ends.
        let started = Date()
        let late = try gateway.post(temperature + "3000", path: "/function/slow",
                                    extra: [("Dyninka-Parts", "\(temperature.utf8.count),4"), ("Dyninka-Deadline", "300")])
        let waited = Date().timeIntervalSince(started)
        #expect(late.status == 504, "\(late)")
        #expect(late.error?.service == "slow")
        #expect(late.error?.kind == "timeout")
        #expect(waited > 0.25 && waited < 2, "\(waited)")
        // Counted per function, with the failure under the function's name.
        #expect(try gateway.metric(#"dyninka_requests_total{service="slow",code="504"}"#) == 1)
        #expect(try gateway.metric(#"dyninka_errors_total{service="slow",kind="timeout"}"#) == 1)
    }

    /// The Dyninka-Deadline a request carried, in milliseconds.
    private func deadline(in head: String) -> Int? {
        head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("dyninka-deadline:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
    }

    @Test(arguments: HostMode.allCases)
    func theGatewayPassesOnWhatIsLeftOfTheBudget(mode: HostMode) throws {
        // A scripted function behind the gateway records the budget it was given.
        let function = try ScriptedServer { _ in .init(chunks: [ok(temperature)]) }
        let gateway = try mode.startGateway(functions: ["map": function.port])
        #expect(try gateway.post(temperature, path: "/function/map", extra: [("Dyninka-Deadline", "5000")]).status == 200)
        let passed = try #require(deadline(in: function.heads.last ?? ""), "\(function.heads)")
        #expect(passed <= 5000 && passed > 4000, "\(passed)")
        // Without a budget none is invented; a malformed one is the client's error.
        #expect(try gateway.post(temperature, path: "/function/map").status == 200)
        #expect(deadline(in: function.heads.last ?? "") == nil)
        let bad = try gateway.post(temperature, path: "/function/map", extra: [("Dyninka-Deadline", "soon")])
        #expect(bad.status == 400 && bad.error?.kind == "bad-input", "\(bad)")
        #expect(function.requests == 2)
    }

    @Test(arguments: HostMode.allCases)
    func theOrchestratorPassesOnWhatIsLeftOfTheBudget(mode: HostMode) throws {
        // A scripted gateway in front of the orchestrator records the budget each step was given.
        let steps = try ScriptedServer { _ in .init(chunks: [ok(#"{"sensor":"s","variable":"Humidity","units":"%","timestamp":"t","value":40,"location":"l"}"#)]) }
        let orchestrator = try mode.startOrchestrator(gateway: steps.port)
        #expect(try orchestrator.post(extra: [("Dyninka-Deadline", "5000")]).status != 504)
        let first = try #require(steps.heads.first)
        #expect(first.hasPrefix("POST /function/get "), "\(first)")
        let given = try #require(deadline(in: first), "\(first)")
        #expect(given <= 5000 && given > 4000, "\(given)")
        // A spent budget: the orchestrator calls nothing and says so.
        let calls = steps.requests
        let spent = try orchestrator.post(extra: [("Dyninka-Deadline", "0")])
        #expect(spent.status == 504, "\(spent)")
        #expect(spent.error?.kind == "timeout")
        #expect(spent.error?.message.contains("deadline passed before calling 'get'") == true, "\(spent)")
        #expect(steps.requests == calls)
    }

    @Test(arguments: HostMode.allCases)
    func functionInstancesNeverForward(mode: HostMode) throws {
        let function = try mode.startFunction("map")
        let response = try function.post(temperature, route: "movingAvg()")
        #expect(response.status == 200)
        #expect(response.json()?["value"] as? Double == 30, "map answered itself instead of forwarding")
    }

    @Test func aKilledFunctionInstanceGives502NamingIt() throws {
        let topology = try GatewayTopology()
        topology.functions["map"]!.stop()
        // Rows cycle Temperature / Humidity / CO2: the first reaches map.
        let response = try topology.run()
        #expect(response.status == 502)
        #expect(response.error?.service == "map")
        #expect(response.error?.kind == "unreachable")
        let unknown = try topology.gateway.client.post(path: "/function/nope")
        #expect(unknown.status == 404)
    }
}
