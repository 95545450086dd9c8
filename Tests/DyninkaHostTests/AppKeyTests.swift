import CDyninkaCrypto
import Foundation
import Testing
@testable import DyninkaHost

/// Routes only the app may write: with an app key, hops inside the app are signed; a client may
/// run main's chain at the entry (or what the operator allows), nothing else.
@Suite(.serialized) struct AppKeyTests {
    static let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
    static let keyFile: String = {
        let path = NSTemporaryDirectory() + "dyninka-appkey-\(getpid()).key"
        try? (hex + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
        return path
    }()

    /// The paper's chain, every host with the key (and `extra` arguments for some).
    func chain(_ extra: [String: [String]] = [:]) throws -> HostCluster {
        let order = ["movingAvg", "map", "filterTemperature", "get"]
        return try HostCluster(order, arguments: Dictionary(uniqueKeysWithValues: order.map { ($0, ["--app-key-file", Self.keyFile] + (extra[$0] ?? [])) }))
    }

    /// A Dyninka-Auth value made with `hex` for a request to `service` (nil parts are absent).
    static func auth(_ hex: String = AppKeyTests.hex, service: String, route: String?, arguments: String? = nil, deadline: String? = nil,
                     expiry: UInt64 = AppKey.now() + 10_000) -> String {
        let bytes = stride(from: 0, to: hex.count, by: 2).map { UInt8(hex.dropFirst($0).prefix(2), radix: 16)! }
        let key = bytes.withUnsafeBufferPointer { dyn_app_key_new($0.baseAddress, $0.count) }!
        defer { dyn_app_key_free(key) }
        var out = [CChar](repeating: 0, count: Int(DYN_AUTH_VALUE_MAX))
        let n = withPart(service) { s in withPart(route) { r in withPart(arguments) { a in withPart(deadline) { d in
            dyn_auth_value(key, s, r, a, d, expiry, &out) } } } }
        return String(decoding: out[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    @Test func theAppsOwnHopsRunMainsChain() throws {
        let cluster = try chain()
        defer { cluster.stop() }
        // The first row is a temperature: get -> filterTemperature -> map -> movingAvg, every hop signed.
        let response = try cluster["get"].client.post()
        #expect(response.status == 200 && response.json()?["count"] as? Int == 1, "\(response)")
        let dropped = try cluster["get"].client.post()
        #expect(dropped.status == 204)
    }

    @Test func aClientCannotRerouteTheEntryIntoTheState() throws {
        let cluster = try chain()
        defer { cluster.stop() }
        // The review's attack: humidity rows straight into movingAvg's state.
        let rerouted = try cluster["get"].client.post(route: "map().movingAvg()")
        #expect(rerouted.status == 403 && rerouted.error?.service == "get" && rerouted.error?.kind == "bad-route", "\(rerouted)")
        #expect(rerouted.error?.message.contains("main's dataflow") == true, "\(rerouted)")
        // Nor call a service inside the app directly, nor pass other arguments.
        let direct = try cluster["movingAvg"].client.post(#"{"value":99}"#)
        #expect(direct.status == 403 && direct.error?.service == "movingAvg" && direct.error?.message.contains("clients start at 'get'") == true, "\(direct)")
        // The state saw none of it.
        #expect(try cluster["get"].client.post().json()?["count"] as? Int == 1)
    }

    @Test func aSignatureCoversRouteArgumentsDeadlineAndExpiry() throws {
        let cluster = try chain()
        defer { cluster.stop() }
        let client = cluster["movingAvg"].client
        let body = #"{"value":10}"#
        // Signed for what it carries: the app's own hop.
        let good = try client.post(body, route: "", extra: [("Dyninka-Auth", Self.auth(service: "movingAvg", route: ""))])
        #expect(good.status == 200, "\(good)")
        // The route changed after signing; signed for another service; another key; expired.
        let refusals = [
            try client.post(body, route: "alert(conditions: weather())", extra: [("Dyninka-Auth", Self.auth(service: "movingAvg", route: ""))]),
            try client.post(body, route: "", extra: [("Dyninka-Auth", Self.auth(service: "map", route: ""))]),
            try client.post(body, route: "", extra: [("Dyninka-Auth", Self.auth(String(repeating: "ab", count: 32), service: "movingAvg", route: ""))]),
            try client.post(body, route: "", extra: [("Dyninka-Auth", Self.auth(service: "movingAvg", route: ""))]
                                                + [("Dyninka-Deadline", "5000")]),
            try client.post(body, route: "", extra: [("Dyninka-Auth", "v1 1 " + String(repeating: "0", count: 64))]),
        ]
        for refused in refusals {
            #expect(refused.status == 403 && refused.error?.message.contains("does not match") == true, "\(refused)")
        }
        let expired = try client.post(body, route: "", extra: [("Dyninka-Auth", Self.auth(service: "movingAvg", route: "", expiry: AppKey.now() - 5_000))])
        #expect(expired.status == 403 && expired.error?.message.contains("expired") == true, "\(expired)")
    }

    @Test func theOperatorMayOpenAServiceOrARoute() throws {
        let cluster = try chain(["movingAvg": ["--public"], "get": ["--allow-route", "filterTemperature()?.map()"]])
        defer { cluster.stop() }
        #expect(try cluster["movingAvg"].client.post(#"{"value":4}"#).status == 200, "--public: main's chain from a client")
        #expect(try cluster["movingAvg"].client.post(#"{"value":4}"#, route: "alert(conditions: weather())").status == 403, "only main's chain")
        let allowed = try cluster["get"].client.post(route: "filterTemperature()?.map()")
        #expect(allowed.status == 200 && allowed.json()?["value"] != nil, "--allow-route: \(allowed)")
        #expect(try cluster["get"].client.post(route: "map().movingAvg()").status == 403)
        // A bad --allow-route stops the start, naming it.
        let bad = try HostProcess.run(["serve", "--app", BuildProducts.fixture, "--service", "get", "--port", "0",
                                       "--app-key-file", Self.keyFile, "--allow-route", "movingAvg()"])
        #expect(bad.status != 0 && bad.errors.contains("--allow-route 'movingAvg()' does not fit 'get'"), "\(bad.errors)")
    }

    @Test func withoutAKeyTheHostSaysWhatThatMeans() throws {
        let host = try HostProcess(service: "map")
        #expect(try host.client.post(#"{"sensor":"a","variable":"Temperature","value":20}"#, route: "").status == 200)
        host.stop()
        #expect(host.standardError().contains("no app key"), "\(host.standardError())")
        // A key too short to be one stops the start.
        let path = NSTemporaryDirectory() + "dyninka-shortkey-\(getpid()).key"
        defer { unlink(path) }
        try "abcd\n".write(toFile: path, atomically: true, encoding: .utf8)
        let short = try HostProcess.run(["serve", "--app", BuildProducts.fixture, "--service", "map", "--port", "0", "--app-key-file", path])
        #expect(short.status != 0 && short.errors.contains("at least 32 hex digits"), "\(short.errors)")
    }
}
