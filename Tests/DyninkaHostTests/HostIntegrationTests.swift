import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

let temperature = #"{"sensor":"s","variable":"Temperature","value":30}"#

/// A TCP socket bound to a free port of 127.0.0.1 (not listening yet), and the port.
func boundSocket() -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            _ = bind(fd, $0, length)
            _ = getsockname(fd, $0, &length)
        }
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

/// A port nobody listens on right now.
func freePort() -> Int {
    let (fd, port) = boundSocket()
    close(fd)
    return port
}

/// Real dyninka-host processes on 127.0.0.1 serving the fixture table.
@Suite(.serialized) struct HostIntegrationTests {
    @Test func fourHopChainReturnsTheMovingAverageAndStateAccumulates() throws {
        let cluster = try HostCluster(["movingAvg", "map", "filterTemperature", "get"])
        let entry = cluster["get"].client
        // Rows cycle Temperature / Humidity / CO2 with values 20, 21, 22, 23, ...
        let first = try entry.post()
        #expect(first.status == 200, "\(first)")
        #expect(first.json()?["average"] as? Double == 20)
        #expect(try entry.post().status == 204)  // Humidity: filtered out
        #expect(try entry.post().status == 204)  // CO2
        let fourth = try entry.post()
        #expect(fourth.json()?["average"] as? Double == 21.5)
        #expect(fourth.json()?["count"] as? Int == 2)
        let timing = fourth.headers["server-timing"] ?? ""
        for service in ["get", "filterTemperature", "map", "movingAvg"] {
            #expect(timing.contains("\(service);dur="), "Server-Timing lacks \(service): \(timing)")
        }
        #expect(timing.contains(";fn="))
    }

    @Test func nilDropsTheItemWith204() throws {
        let cluster = try HostCluster(["map", "filterTemperature"])
        let response = try cluster["filterTemperature"].client.post(#"{"sensor":"s","variable":"CO2","value":1}"#)
        #expect(response.status == 204)
        #expect(response.body.isEmpty)
        #expect(response.headers["server-timing"]?.hasPrefix("filterTemperature;dur=") == true)
    }

    @Test func aThrowIsRelayedUnchangedNamingTheFailingService() throws {
        let cluster = try HostCluster(["explode", "map", "filterTemperature"])
        let response = try cluster["filterTemperature"].client.post(temperature, route: "explode().map()")
        #expect(response.status == 500)
        let error = try #require(response.error)
        #expect(error.service == "explode")
        #expect(error.kind == "function")
        #expect(error.message == "sensor s exploded")
        // The relayed body is byte for byte what explode answered.
        let direct = try cluster["explode"].client.post(temperature, route: "")
        #expect(direct.body == response.body)
    }

    @Test func aKilledMiddleServiceGives502NamingItQuickly() throws {
        let cluster = try HostCluster(["movingAvg", "map", "filterTemperature", "get"])
        cluster["map"].stop()
        let started = Date()
        let response = try cluster["filterTemperature"].client.post(temperature)
        #expect(Date().timeIntervalSince(started) < 1)
        #expect(response.status == 502)
        let error = try #require(response.error)
        #expect(error.service == "map")
        #expect(error.kind == "unreachable")
        #expect(error.message.contains("dyninka-host serve --service map"))
    }

    @Test func aSlowNextHopGives504NamingIt() throws {
        let cluster = try HostCluster(["slow", "map"], arguments: ["map": ["--response-timeout", "300"]])
        let started = Date()
        let response = try cluster["map"].client.post(temperature, route: "slow(ms: 3000)")
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(response.status == 504)
        #expect(response.error?.service == "slow")
        #expect(response.error?.kind == "timeout")
    }

    @Test func aBodyStillBeingSentWhenTheConnectDeadlinePassesGetsTheResponseDeadline() throws {
        // A peer that never accepts or reads: the kernel completes the handshake (backlog), then
        // the socket buffers fill and the write waits. The connection is up, so the 504 must come
        // from the response timeout, not claim the peer did not accept a connection.
        let (stuck, port) = boundSocket()
        defer { close(stuck) }
        #expect(listen(stuck, 4) == 0)
        let host = try HostProcess(service: "echo", peers: ["echo": port],
                                   arguments: ["--connect-timeout", "100", "--response-timeout", "800",
                                               "--max-body-bytes", String(32 << 20)])
        let body = "\"" + String(repeating: "x", count: 24 << 20) + "\""
        let started = Date()
        let response = try host.client.post(body, route: "echo()")
        let elapsed = Date().timeIntervalSince(started)
        #expect(response.status == 504, "\(response.status) \(response.error?.message ?? "")")
        #expect(response.error?.message.contains("did not answer within 800 ms") == true, "\(response.error?.message ?? "")")
        #expect(elapsed > 0.7 && elapsed < 5, "\(elapsed)")
    }

    @Test func customRoutesRunAndMistypedOnesAreRefusedBeforeAnyWork() throws {
        let cluster = try HostCluster(["movingAvg", "calibrate", "scale", "map"])
        let custom = try cluster["map"].client.post(temperature, route: "scale(by: 2).calibrate().movingAvg()")
        #expect(custom.status == 200, "\(custom)")
        #expect(custom.json()?["average"] as? Double == 59.5)  // 30 * 2 - 0.5 (calibrate is async)
        let refused = try cluster["map"].client.post(temperature, route: "movingAvg().scale(by: 2)")
        #expect(refused.status == 400)
        #expect(refused.error?.kind == "bad-route")
        #expect(refused.error?.service == "map")
        #expect(refused.error?.message.contains("'scale' takes Temperature but receives Average") == true)
        // Nothing ran: movingAvg's state is untouched by the refused request.
        let count = try cluster["movingAvg"].client.post(#"{"value":0}"#).json()?["count"] as? Int
        #expect(count == 2)
        // Alternating routes: each request takes its own route (the host remembers the last
        // route's plan by its bytes), the refused one is refused again.
        func services(_ route: String) throws -> [String] {
            let response = try cluster["map"].client.post(temperature, route: route)
            let timing = response.headers["server-timing"] ?? ""
            return timing.split(separator: ",").map { String($0.split(separator: ";")[0]).trimmingCharacters(in: .whitespaces) }
        }
        for _ in 0..<2 {
            #expect(try services("scale(by: 3).movingAvg()") == ["map", "scale", "movingAvg"])
            #expect(try services("scale(by: 2).calibrate().movingAvg()") == ["map", "scale", "calibrate", "movingAvg"])
            #expect(try cluster["map"].client.post(temperature, route: "movingAvg().scale(by: 2)").status == 400)
        }
    }

    @Test func fanInCallsTheDependencyAndPassesItsResult() throws {
        let cluster = try HostCluster(["weather", "alert", "movingAvg", "map"])
        let response = try cluster["map"].client.post(temperature, route: "movingAvg().alert(conditions: weather())")
        #expect(response.status == 200, "\(response)")
        #expect(response.json()?["condition"] as? String == "sunny")
        #expect(response.json()?["level"] as? String == "warn")
        #expect(response.headers["server-timing"]?.contains("weather;dur=") == true)
        // Without Dyninka-Args, alert uses main's argument (weather()).
        let direct = try cluster["alert"].client.post(#"{"average":1,"count":1}"#)
        #expect(direct.json()?["condition"] as? String == "sunny")
    }

    @Test func relayPassesBytesThroughWithoutParsing() throws {
        let port = freePort()
        let echo = try HostProcess(service: "echo", peers: ["echo": port], port: port)
        // Not JSON at all: echo takes RawJSON, and the relay never looks inside.
        let body = "{not json: \u{1F600}"
        let response = try echo.client.post(body, route: "echo().echo()")
        #expect(response.status == 200)
        #expect(response.text == body)
        #expect(response.headers["server-timing"]?.components(separatedBy: "echo;dur=").count == 4)
    }

    @Test func routesCannotNameAnAddress() throws {
        let cluster = try HostCluster(["map"])
        for route in ["http://127.0.0.1:1/x()", "127.0.0.1:80", "x().y()", "map(host: \"127.0.0.1\")"] {
            let response = try cluster["map"].client.post(#"{"sensor":"s","variable":"T","value":1}"#, route: route)
            #expect(response.status == 400, "\(route)")
            #expect(response.error?.kind == "bad-route", "\(route)")
        }
    }

    @Test func badInputGetsItsStatusAndTheHostKeepsServing() throws {
        let host = try HostProcess(service: "map", arguments: ["--max-header-bytes", "2048", "--max-body-bytes", "1024",
                                                              "--request-timeout", "300", "--max-hops", "8"])
        let client = host.client
        let malformed = try client.exchange(Array("GARBAGE\r\n\r\n".utf8))
        #expect(malformed.status == 400)
        #expect(malformed.error?.kind == "bad-input")
        let bigHeaders = try client.exchange(Array("POST / HTTP/1.1\r\nX: \(String(repeating: "a", count: 4096))\r\n\r\n".utf8))
        #expect(bigHeaders.status == 431)
        let bigBody = try client.post(String(repeating: "1", count: 2000))
        #expect(bigBody.status == 413)
        let notJSON = try client.post("{nope", route: "")
        #expect(notJSON.status == 400)
        #expect(notJSON.error?.kind == "bad-input")
        let wrongType = try client.post(#"{"value":1}"#, route: "")
        #expect(wrongType.status == 400)
        #expect(wrongType.error?.message.contains("missing key 'sensor'") == true)
        let unknown = try client.post(temperature, route: "teleport()")
        #expect(unknown.error?.kind == "bad-route")
        let tooMany = try client.post(temperature, route: Array(repeating: "scale(by: 1)", count: 9).joined(separator: "."))
        #expect(tooMany.status == 400)
        #expect(tooMany.error?.message.contains("limit is 8") == true)
        // A slow client: half a request, then silence.
        let fd = try client.connect()
        try client.send(fd, Array("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc".utf8))
        let slow = try client.readResponse(fd)
        close(fd)
        #expect(slow.status == 408)
        // Still serving.
        let ok = try client.post(temperature, route: "")
        #expect(ok.status == 200)
        #expect(ok.json()?["value"] as? Double == 30)
        #expect(try client.get("/healthz").status == 200)
        #expect(try client.get("/nope").status == 404)
    }

    @Test func healthReadinessAndMetricsAnswer() throws {
        let host = try HostProcess(service: "map")
        #expect(try host.client.get("/healthz").text == "ok\n")
        #expect(try host.client.get("/readyz").status == 200)
        _ = try host.client.post(temperature, route: "")
        _ = try host.client.post("{", route: "")
        let metrics = try host.client.get("/metrics").text
        #expect(metrics.contains(#"dyninka_requests_total{service="map",code="200"} 1"#))
        #expect(metrics.contains(#"dyninka_errors_total{service="map",kind="bad-input"} 1"#))
        #expect(metrics.contains(#"dyninka_request_duration_seconds_count{service="map"} 2"#))
        #expect(metrics.contains("# TYPE dyninka_function_duration_seconds histogram"))
    }

    @Test func theAccessLogHasALinePerRequest() throws {
        let host = try HostProcess(service: "map", arguments: ["--access-log", "--log-level", "info"])
        _ = try host.client.post(temperature, route: "")
        _ = try host.client.get("/healthz")
        host.signal(SIGTERM)
        #expect(host.waitForExit() == 0)
        let log = host.standardError()
        #expect(log.contains("\"POST /\" 200 "), "\(log)")
        #expect(log.contains("\"GET /healthz\" 200 3 "))
    }

    @Test func keepAliveClientsGetSeveralAnswersOnOneConnection() throws {
        let host = try HostProcess(service: "map")
        let client = host.client
        let fd = try client.connect()
        defer { close(fd) }
        let one = "POST / HTTP/1.1\r\nHost: x\r\nDyninka-Route: \r\nContent-Length: \(temperature.utf8.count)\r\n\r\n\(temperature)"
        let last = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        try client.send(fd, Array((one + one + last).utf8))
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.components(separatedBy: "HTTP/1.1 200 OK").count == 4, "\(text)")
        #expect(text.hasSuffix("ok\n"))
    }

    @Test func sigtermDrainsInFlightRequestsThenExitsZero() throws {
        let slow = try HostProcess(service: "slow", arguments: ["--drain-delay", "400"])
        let client = slow.client
        let fd = try startSlowRequest(slow, ms: 700)
        slow.signal(SIGTERM)
        usleep(100_000)
        #expect(try client.get("/readyz").status == 503)
        let response = try client.readResponse(fd)
        close(fd)
        #expect(response.status == 200, "in-flight request must finish: \(response)")
        #expect(slow.waitForExit() == 0)
    }

    @Test func startupErrorsSayWhatToDo() throws {
        let unknown = try HostProcess.run(["serve", "--app", BuildProducts.fixture, "--service", "nope", "--port", "0"])
        #expect(unknown.status != 0)
        #expect(unknown.errors.contains("service 'nope' is not in"), "\(unknown.errors)")
        #expect(unknown.errors.contains("filterTemperature"))

        let missing = try HostProcess.run(["serve", "--app", "/nonexistent.so", "--service", "x"])
        #expect(missing.status != 0)
        #expect(missing.errors.contains("dyninka build"), "\(missing.errors)")

        let named = try HostProcess.run(["serve", "--app", BuildProducts.fixture, "--service", "map", "--host", "localhost", "--port", "0"])
        #expect(named.status == 2)
        #expect(named.errors.contains("--host 'localhost' is not a numeric IP address (for example 127.0.0.1 or 0.0.0.0)"), "\(named.errors)")
    }
}
