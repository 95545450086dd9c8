import Foundation
import Testing
import DyninkaTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Async services under a host that lends its loop (ABI 2): the fixture's `describe` fetches an
/// endpoint twice with `try await Fetch.json`, through the host's non-blocking exchange.
@Suite(.serialized) struct LoopFetchTests {
    /// The open-connections gauge of a host, read from /metrics (the reading's own connection included).
    func openConnections(_ host: HostProcess) throws -> Int? {
        let text = String(decoding: try host.client.get("/metrics").body, as: UTF8.self)
        let line = text.split(separator: "\n").first { $0.hasPrefix("dyninka_open_connections ") }
        return line.flatMap { Int($0.split(separator: " ").last ?? "") }
    }

    @Test func anAsyncServiceFetchesOnTheLoopOverAKeptAliveConnection() throws {
        let endpoint = try HostProcess(service: "echo")
        let describe = try HostProcess(service: "describe", environment: ["FIXTURE_FETCH_URL": "http://127.0.0.1:\(endpoint.port)/"])
        for _ in 0..<5 {
            let response = try describe.client.post()
            #expect(response.status == 200, "\(response)")
            #expect(response.json()?["service"] as? String == "echo")
            #expect(response.json()?["app"] as? String == "Fixture")
        }
        // Ten GETs went over one connection, still open in the pool: the endpoint sees it and
        // the connection of this /metrics request.
        #expect(try openConnections(endpoint) == 2)
    }

    @Test func aHostNameIsResolvedAndAnUnknownOneFailsSayingSo() throws {
        let endpoint = try HostProcess(service: "echo")
        let named = try HostProcess(service: "describe", environment: ["FIXTURE_FETCH_URL": "http://localhost:\(endpoint.port)/"])
        let response = try named.client.post()
        #expect(response.status == 200, "\(response)")
        #expect(response.json()?["service"] as? String == "echo")

        // An unknown name, looked up in /etc/hosts only (a mount namespace gives the host an
        // nsswitch.conf without DNS): no query leaves the machine.
        guard NamedPeerTests.canUnshare else { return }
        let nsswitch = FileManager.default.temporaryDirectory.appendingPathComponent("dyninka-nsswitch-\(getpid())")
        try "hosts: files\n".write(to: nsswitch, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: nsswitch) }
        let unknown = try HostProcess(
            name: "describe",
            commandLine: ["serve", "--app", BuildProducts.fixture, "--service", "describe", "--port", "0", "--log-level", "warning"],
            environment: ["FIXTURE_FETCH_URL": "http://no-such-host.invalid:80/"],
            launcher: ["/usr/bin/unshare", "-m", "sh", "-c", "mount --bind \(nsswitch.path) /etc/nsswitch.conf && exec \"$@\"", "sh"])
        let failed = try unknown.client.post()
        #expect(failed.status == 500)
        #expect(failed.error?.message.contains("cannot resolve 'no-such-host.invalid'") == true, "\(failed)")
    }

    @Test func aPooledConnectionToARestartedEndpointIsReplaced() throws {
        var endpoint = try HostProcess(service: "echo")
        let port = endpoint.port
        let describe = try HostProcess(service: "describe", environment: ["FIXTURE_FETCH_URL": "http://127.0.0.1:\(port)/"])
        #expect(try describe.client.post().status == 200)
        endpoint.stop()
        endpoint = try HostProcess(service: "echo", port: port)
        let response = try describe.client.post()
        #expect(response.status == 200, "\(response)")
        #expect(response.json()?["service"] as? String == "echo")
    }

    @Test func aConnectionWithBytesAfterTheResponseIsNotReused() throws {
        // The first answer comes with a second, unasked-for one glued to it.
        let answer = ok(#"{"app":"Scripted","service":"endpoint"}"#)
        let endpoint = try ScriptedServer { index in
            index == 0 ? .init(chunks: [answer + ok(#"{"app":"Stale","service":"stale"}"#)]) : .init(chunks: [answer])
        }
        let describe = try HostProcess(service: "describe", environment: ["FIXTURE_FETCH_URL": "http://127.0.0.1:\(endpoint.port)/"])
        let response = try describe.client.post()
        #expect(response.status == 200, "\(response)")
        #expect(response.json()?["app"] as? String == "Scripted")
        #expect(endpoint.connections == 2)
    }

    @Test func aKeptAliveConnectionClosedUnansweredIsRetriedOnceOnANewOne() throws {
        // describe GETs twice: the first answer keeps the connection; the second request on it
        // is met with a close and nothing else, so it must go out again on a new connection.
        let endpoint = try ScriptedServer { index in
            index == 1 ? .init(chunks: [], close: true) : .init(chunks: [ok(#"{"app":"Scripted","service":"endpoint"}"#)])
        }
        let describe = try HostProcess(service: "describe", environment: ["FIXTURE_FETCH_URL": "http://127.0.0.1:\(endpoint.port)/"])
        let response = try describe.client.post()
        #expect(response.status == 200, "\(response)")
        #expect(response.json()?["app"] as? String == "Scripted")
        #expect(endpoint.requests == 3)
        #expect(endpoint.connections == 2)

        // A second failure in a row is not retried again: it fails the service, saying so.
        let failing = try ScriptedServer { index in
            index == 0 ? .init(chunks: [ok(#"{"app":"a","service":"s"}"#)]) : .init(chunks: [], close: true)
        }
        let strict = try HostProcess(service: "describe", environment: ["FIXTURE_FETCH_URL": "http://127.0.0.1:\(failing.port)/"])
        let failed = try strict.client.post()
        #expect(failed.status == 500)
        #expect(failed.error?.message.contains("closed the connection before answering") == true, "\(failed)")
        #expect(failing.requests == 3)
    }

    @Test func anUnreachableEndpointFailsTheServiceAtOnceSayingWhy() throws {
        let port = freePort()
        let describe = try HostProcess(service: "describe", environment: ["FIXTURE_FETCH_URL": "http://127.0.0.1:\(port)/"])
        let started = Date()
        let response = try describe.client.post()
        #expect(Date().timeIntervalSince(started) < 1)
        #expect(response.status == 500)
        let error = try #require(response.error)
        #expect(error.service == "describe")
        #expect(error.kind == "function")
        #expect(error.message.contains("GET http://127.0.0.1:\(port)/"), "\(error.message)")
        #expect(error.message.contains("cannot connect"), "\(error.message)")
    }

    @Test func aSilentEndpointTimesOutWhileTheLoopKeepsServing() throws {
        // Listens but never accepts or answers: the kernel completes the handshake.
        let (fd, port) = boundSocket()
        defer { close(fd) }
        #expect(listen(fd, 8) == 0)
        let describe = try HostProcess(service: "describe", environment: [
            "FIXTURE_FETCH_URL": "http://127.0.0.1:\(port)/", "FIXTURE_FETCH_TIMEOUT": "0.6",
        ])
        let client = describe.client
        let waiting = Thread { _ = try? client.post() }
        waiting.start()
        usleep(150_000)
        // The service's task waits on the loop; the loop answers others meanwhile.
        let probeStarted = Date()
        #expect(try client.get("/healthz").status == 200)
        #expect(Date().timeIntervalSince(probeStarted) < 0.3)

        let started = Date()
        let response = try client.post()
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed > 0.5 && elapsed < 2, "\(elapsed)")
        #expect(response.status == 500)
        #expect(response.error?.message.contains("no answer within 600 ms") == true, "\(response)")
    }
}
