import DyninkaTestSupport
import Foundation
import Testing

/// Fusion: one host serving several services runs a route's next step in process. To a client it
/// must be indistinguishable from one host per service: the same statuses, bodies, failures
/// naming the same stage, @Placed state, and one Server-Timing entry and metrics series per stage.
@Suite(.serialized) struct FusionTests {
    /// Every fixture service a request below touches, callees before callers.
    static let services = ["weather", "slow", "explode", "alert", "movingAvg", "scale", "calibrate", "map", "drop", "filterTemperature", "get"]

    /// One request: a path (a service), its body, route, arguments and extra header fields.
    struct Call: CustomStringConvertible {
        var service: String
        var body = ""
        var route: String?
        var arguments: String?
        var extra: [(String, String)] = []
        var description: String { "\(service) \(route ?? "(main's route)") \(arguments ?? "")" }
    }

    static let reading = #"{"sensor":"s","variable":"Temperature","value":30}"#

    /// Requests that cover answers, drops, each failure kind, fan-in, async stages and state.
    static let calls: [Call] = {
        var calls = (0..<7).map { _ in Call(service: "get") }          // 200 and 204, get's and movingAvg's state
        calls += [
            Call(service: "map", body: reading, route: "movingAvg()"),
            Call(service: "filterTemperature", body: reading, route: "explode()"),            // 500 function, named explode
            Call(service: "filterTemperature", body: reading, route: "drop().map()"),         // 204 from drop
            Call(service: "map", body: reading, route: "scale(by: 2).movingAvg()"),            // a literal argument
            Call(service: "map", body: reading, route: "movingAvg().alert(conditions: weather())"), // fan-in
            Call(service: "map", body: reading, route: "calibrate().movingAvg()"),              // an async stage
            Call(service: "map", body: "{\"sensor\":", route: "movingAvg()"),                  // 400 bad-input at map
            Call(service: "map", body: reading, route: "nowhere()"),                           // 400 bad-route
            Call(service: "map", body: reading, route: "explode()"),                           // 400: the types do not fit
            Call(service: "map", body: reading, route: "slow(ms: 1000)", extra: [("Dyninka-Deadline", "150")]), // 504
            Call(service: "get", route: "filterTemperature().map().movingAvg()"),
        ]
        return calls
    }()

    /// The names in a Server-Timing value, in order.
    static func stages(_ response: TestResponse) -> [String] {
        (response.headers["server-timing"] ?? "").split(separator: ",").map { $0.split(separator: ";")[0].trimmingCharacters(in: .whitespaces) }
    }

    @Test func aFusedHostAnswersExactlyAsOneHostPerService() throws {
        let separate = try HostCluster(Self.services)
        defer { separate.stop() }
        let fused = try HostProcess(service: Self.services.reversed().joined(separator: ","))
        defer { fused.stop() }
        for call in Self.calls {
            let one = try separate[call.service].client.post(call.body, route: call.route, arguments: call.arguments, extra: call.extra)
            let other = try fused.client.post(call.body, route: call.route, arguments: call.arguments,
                                              path: "/\(call.service)", extra: call.extra)
            #expect(one.status == other.status, "\(call): \(one) vs fused \(other)")
            #expect(Self.stages(one) == Self.stages(other), "\(call): Server-Timing \(one.headers["server-timing"] ?? "") vs fused \(other.headers["server-timing"] ?? "")")
            if let error = one.error {
                let fusedError = try #require(other.error, "\(call): fused answered \(other)")
                #expect(error.service == fusedError.service && error.kind == fusedError.kind, "\(call): \(error) vs fused \(fusedError)")
                // A deadline's message says how long was left, which differs by a millisecond or so.
                if one.status != 504 { #expect(error.message == fusedError.message, "\(call)") }
            } else {
                #expect(one.text == other.text, "\(call): \(one.text) vs fused \(other.text)")
            }
        }
        // Each stage has its own series, as it would on its own host.
        for service in ["get", "filterTemperature", "map", "movingAvg", "explode"] {
            let alone = try metric(separate[service], "dyninka_requests_total{service=\"\(service)\",code=\"200\"}") ?? 0
            let together = try metric(fused, "dyninka_requests_total{service=\"\(service)\",code=\"200\"}") ?? 0
            #expect(alone == together, "\(service): \(alone) answers of 200 alone, \(together) fused")
        }
        #expect(try metric(fused, "dyninka_requests_total{service=\"movingAvg\",code=\"200\"}") ?? 0 >= 4)
    }

    @Test func eachServiceOfAFusedHostAnswersAtItsPathAndTheFirstAtTheRoot() throws {
        let fused = try HostProcess(service: "map,movingAvg")
        defer { fused.stop() }
        let root = try fused.client.post(Self.reading)
        #expect(root.status == 200 && root.text.contains("\"count\":1"), "\(root)")
        #expect(Self.stages(root) == ["map", "movingAvg"], "\(root)")
        let avg = try fused.client.post(#"{"value":10}"#, path: "/movingAvg")
        #expect(avg.status == 200 && avg.text.contains("\"count\":2"), "\(avg)")
        let elsewhere = try fused.client.post(Self.reading, path: "/get")
        #expect(elsewhere.status == 404, "\(elsewhere)")
        #expect(elsewhere.error?.message.contains("no such path '/get'") == true, "\(elsewhere)")
        let description = try fused.client.get("/").text
        #expect(description.contains("\"service\":\"map\""), "\(description)")
    }

    @Test func aStageOutsideTheGroupIsAnOrdinaryHop() throws {
        // map and movingAvg fused; alert's dependency weather and the stage after it live apart.
        let weather = try HostProcess(service: "weather")
        let alert = try HostProcess(service: "alert", peers: ["weather": weather.port])
        let fused = try HostProcess(service: "map,movingAvg", peers: ["alert": alert.port, "weather": weather.port])
        defer { [fused, alert, weather].forEach { $0.stop() } }
        let answer = try fused.client.post(Self.reading, route: "movingAvg().alert(conditions: weather())")
        #expect(answer.status == 200 && answer.text.contains("\"level\":\"warn\""), "\(answer)")
        #expect(Self.stages(answer) == ["map", "movingAvg", "alert", "weather"], "\(answer)")
        alert.stop()
        let down = try fused.client.post(Self.reading, route: "movingAvg().alert(conditions: weather())")
        #expect(down.status == 502 && down.error?.service == "alert", "\(down)")
        #expect(Self.stages(down) == ["map", "movingAvg"], "\(down)")
    }

    @Test func aFusedHostRefusesBadGroups() throws {
        let twice = try HostProcess.run(["serve", "--app", BuildProducts.fixture, "--service", "map,map", "--port", "0"])
        #expect(twice.status == 2 && twice.errors.contains("each once"), "\(twice.errors)")
        let unknown = try HostProcess.run(["serve", "--app", BuildProducts.fixture, "--service", "map,nothing", "--port", "0"])
        #expect(unknown.status == 2 && unknown.errors.contains("'nothing' is not in"), "\(unknown.errors)")
        let states = try HostProcess.run(["serve", "--app", BuildProducts.fixture, "--service", "get,movingAvg", "--port", "0",
                                          "--state-out", "/tmp/dyninka-fusion-test-state"])
        #expect(states.status == 2 && states.errors.contains("put {service} in the path"), "\(states.errors)")
    }
}
