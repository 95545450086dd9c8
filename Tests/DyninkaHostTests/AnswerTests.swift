import DyninkaHTTP
import Testing
@testable import DyninkaHost

/// The one place that composes answer heads.
@Suite struct AnswerTests {
    /// The head of a response given as text.
    func head(_ text: String) throws -> HTTPHead {
        final class Keep: HTTPParserDelegate {
            var head: HTTPHead?
            func parserHead(_ head: HTTPHead) { self.head = head }
            func parserBody(_ bytes: UnsafeRawBufferPointer) {}
        }
        let parser = HTTPParser(kind: .response)
        let keep = Keep()
        parser.delegate = keep
        _ = Array(text.utf8).withUnsafeBytes { parser.feed($0) }
        return try #require(keep.head)
    }

    func fields(_ answer: Answer) -> String {
        let buffer = ByteStore()
        answer.appendFields(to: buffer)
        return buffer.string
    }

    @Test func aRelayedAnswerPassesOnTypeRetryAfterAndTimingsInOrder() throws {
        let dependency = try head("HTTP/1.1 200 OK\r\nServer-Timing: weather;dur=1.000;fn=0.100\r\nContent-Length: 0\r\n\r\n")
        let downstream = try head("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nRetry-After: 7\r\n"
                                  + "Server-Timing: alert;dur=2.000;fn=0.200\r\nContent-Length: 0\r\n\r\n")
        let text = fields(Answer(status: 503, relayed: downstream, timing: HopTiming(name: "assess", started: 0, function: 1_500_000, trace: nil),
                                 earlier: [dependency]))
        #expect(text.contains("Content-Type: application/problem+json\r\n"))
        #expect(text.contains("Retry-After: 7\r\n"))
        let timing = try #require(text.split(separator: "\r\n").first { $0.hasPrefix("Server-Timing: ") })
        #expect(timing.hasPrefix("Server-Timing: assess;dur="))
        #expect(timing.contains(";fn=1.500, weather;dur=1.000;fn=0.100, alert;dur=2.000;fn=0.200"), "\(timing)")
    }

    @Test func ownFailuresAreJSONAndTheHostsOwnAnswersCarryNoTiming() throws {
        let overloaded = ServiceFailure(service: "map", kind: .overloaded, message: "busy")
        let text = fields(Answer(failure: overloaded, timing: HopTiming(name: "map", started: 0, trace: nil)))
        #expect(text.hasPrefix("Content-Type: application/json\r\nRetry-After: 1\r\nServer-Timing: map;dur="))
        #expect(!fields(Answer(failure: overloaded, timing: nil)).contains("Server-Timing"))
        // An orchestrator's relayed step: its timing once, after the steps before it.
        let step = try head("HTTP/1.1 500 Internal Server Error\r\nServer-Timing: explode;dur=1.000;fn=0.500\r\nContent-Length: 0\r\n\r\n")
        let relayed = fields(Answer(status: 500, relayed: step, timing: HopTiming(name: "orchestrator", started: 0, trace: nil)))
        #expect(relayed.components(separatedBy: "explode;dur").count == 2, "\(relayed)")
    }
}
