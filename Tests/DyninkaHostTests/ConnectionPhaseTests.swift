import DyninkaLoop
import DyninkaTestSupport
import Foundation
import Testing
@testable import DyninkaHost

/// The inbound connection's phases as a client sees them: what the server asks of a connection
/// (idle, partial, between requests, busy) follows from the one phase, and every way out of a
/// request (answered, kept, refused, timed out) lands where it should.
@Suite(.serialized) struct ConnectionPhaseTests {
    let post = "POST / HTTP/1.1\r\nHost: x\r\nDyninka-Route: \r\nContent-Length: \(temperature.utf8.count)\r\n\r\n\(temperature)"

    private func describe(_ connection: InboundConnection) -> String {
        switch connection.phase {
        case .awaiting(let after): return after ? "awaiting after an answer" : "awaiting"
        case .receiving: return "receiving"
        case .processing: return "processing"
        case .responding(.whole): return "responding"
        case .responding(.relayed): return "relaying"
        case .closed: return "closed"
        }
    }

    @Test func aKeptRequestGoesThroughEveryPhaseAndBack() throws {
        let harness = try InProcessHost(service: "map")
        let stream = harness.connect()
        let connection = try #require(harness.host.connections.last)
        #expect(describe(connection) == "awaiting")
        #expect(connection.idle && connection.partial && !connection.betweenRequests && !connection.busy)
        #expect(connection.deadline > 0, "the request timeout runs from the accept")

        let bytes = Array(post.utf8)
        stream.deliver(Array(bytes[..<20]))
        #expect(describe(connection) == "receiving")
        #expect(!connection.idle && connection.partial && connection.deadline > 0)

        // The client reads nothing: the response waits for the kernel, under the write timeout.
        stream.holdWrites = true
        stream.deliver(Array(bytes[20...]))
        harness.run(until: { !stream.responses.isEmpty })
        #expect(describe(connection) == "responding")
        #expect(connection.busy && connection.writing && !connection.partial)
        let writeDeadline = connection.deadline
        #expect(writeDeadline > 0, "the write timeout is armed")

        stream.completeWrites()
        #expect(describe(connection) == "awaiting after an answer")
        #expect(connection.betweenRequests && connection.idle && !connection.partial && !connection.busy)
        #expect(connection.deadline > 0 && connection.deadline != writeDeadline, "the request timeout runs again")
        #expect(stream.responses.first?.status == 200)
    }

    @Test func aRefusedRequestAndATimeoutCloseTheConnection() throws {
        let harness = try InProcessHost(service: "map") { $0.requestTimeout = 50 }
        // Not HTTP: 400, and the connection closes.
        let bad = harness.connect()
        let first = try #require(harness.host.connections.last)
        bad.deliver("NOT HTTP AT ALL\r\n\r\n")
        harness.run(until: { bad.closed })
        #expect(describe(first) == "closed" && first.isClosed && first.deadline == 0)
        #expect(bad.responses.first?.status == 400)

        // Half a request and then silence: 408 when the request timeout passes.
        let slow = harness.connect()
        let second = try #require(harness.host.connections.last)
        slow.deliver(String(post.prefix(30)))
        #expect(describe(second) == "receiving")
        harness.run(until: { slow.closed }, iterations: 5_000)
        #expect(describe(second) == "closed")
        #expect(slow.responses.first?.status == 408)

        // Nothing at all: closed without an answer.
        let silent = harness.connect()
        let third = try #require(harness.host.connections.last)
        harness.run(until: { silent.closed }, iterations: 5_000)
        #expect(describe(third) == "closed" && silent.responses.isEmpty)
    }
}

/// Every request's outcome is recorded once, where its answer is written: the request series,
/// the failure series and nothing twice, whichever way the answer came about.
@Suite(.serialized) struct OutcomeTests {
    private func count(_ metrics: Metrics, _ prefix: String) -> Int {
        metrics.render().split(separator: "\n").filter { $0.hasPrefix(prefix) }
            .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0) { $0 + Int($1) }
    }

    @Test func eachAnswerCountsOnceInItsSeries() throws {
        let harness = try InProcessHost(service: "map") { $0.maxInFlight = 1 }
        let metrics = harness.host.context.metrics
        let post = "POST / HTTP/1.1\r\nDyninka-Route: \r\nContent-Length: \(temperature.utf8.count)\r\n\r\n\(temperature)"
        // An answer: one request, no failure.
        #expect(harness.exchange(post)?.status == 200)
        #expect(metrics.responses(service: "map", status: 200) == 1)
        // A route the service refuses: one request (400) and one bad-route failure.
        let bad = "POST / HTTP/1.1\r\nDyninka-Route: nowhere()\r\nContent-Length: \(temperature.utf8.count)\r\n\r\n\(temperature)"
        #expect(harness.exchange(bad)?.status == 400)
        #expect(metrics.responses(service: "map", status: 400) == 1)
        #expect(count(metrics, "dyninka_errors_total{service=\"map\",kind=\"bad-route\"}") == 1)
        // Not HTTP: a bad-input failure of the host, and no request.
        #expect(harness.exchange("NOT HTTP\r\n\r\n")?.status == 400)
        #expect(count(metrics, "dyninka_errors_total{service=\"map\",kind=\"bad-input\"}") == 1)
        #expect(metrics.responses(service: "map", status: 400) == 1)
        // Over --max-in-flight: one 503 request and one overloaded failure.
        let slow = harness.connect()
        slow.holdWrites = true
        slow.deliver(post)
        harness.run(until: { !slow.responses.isEmpty })
        #expect(harness.exchange(post)?.status == 503)
        #expect(metrics.responses(service: "map", status: 503) == 1)
        #expect(count(metrics, "dyninka_errors_total{service=\"map\",kind=\"overloaded\"}") == 1)
        #expect(count(metrics, "dyninka_requests_total{") == 4, "\(metrics.render())")
    }
}
