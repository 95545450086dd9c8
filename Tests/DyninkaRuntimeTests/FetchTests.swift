import Foundation
import Testing
import DyninkaTestSupport
@testable import DyninkaRuntime
#if canImport(Glibc)
import Glibc
#endif

@Suite struct FetchTests {
    struct Reading: Decodable, Equatable { var value: Double }

    @Test func keepAliveConnectionsAreReusedAndBodiesDecode() throws {
        let server = try ScriptedServer { i in .init(chunks: [ok(#"{"value":\#(i)}"#)]) }
        let url = "http://127.0.0.1:\(server.port)/next"
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 0))
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 1))
        #expect(try Fetch.bytes(from: url) == Array(#"{"value":2}"#.utf8))
        #expect(server.connections == 1)
    }

    @Test func responsesSplitAnywhereAreReassembled() throws {
        let whole = ok(#"{"value":21.5}"#, extra: "X-Long: \(String(repeating: "x", count: 5000))\r\n")
        let cut = whole.index(whole.startIndex, offsetBy: 17)
        let bodyStart = whole.range(of: "\r\n\r\n")!.upperBound
        let server = try ScriptedServer { _ in
            .init(chunks: [String(whole[..<cut]), String(whole[cut..<bodyStart]), String(whole[bodyStart...])])
        }
        #expect(try Fetch.json(Reading.self, from: "http://127.0.0.1:\(server.port)/") == Reading(value: 21.5))
    }

    @Test func closedAndBodyUntilCloseResponses() throws {
        let server = try ScriptedServer { i in
            i == 0 ? .init(chunks: [ok(#"{"value":1}"#, extra: "Connection: close\r\n")], close: true)
                   : .init(chunks: ["HTTP/1.1 200 OK\r\n\r\n{\"value\":2}"], close: true)
        }
        let url = "http://127.0.0.1:\(server.port)/"
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 1))
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 2))
        #expect(server.connections == 2)
    }

    /// The same llhttp parser as the host's: a chunked answer is decoded (the hand parser before
    /// it handed over the chunk framing as the body), and a malformed one is named.
    @Test func chunkedAnswersDecodeAndMalformedOnesAreNamed() throws {
        let server = try ScriptedServer { i in
            i == 0 ? .init(chunks: ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{\"valu\r\n", "7\r\ne\":3.5}\r\n0\r\n\r\n"])
                   : .init(chunks: ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"], close: true)
        }
        let url = "http://127.0.0.1:\(server.port)/"
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 3.5))
        #expect { _ = try Fetch.bytes(from: url) } throws: { "\($0)".contains("malformed HTTP") }
    }

    @Test func aPooledConnectionTheServerClosedIsRetriedOnce() throws {
        // The first answer keeps the connection (no Connection: close) but the server closes it.
        let server = try ScriptedServer { i in .init(chunks: [ok(#"{"value":\#(i)}"#)], close: i == 0) }
        let url = "http://127.0.0.1:\(server.port)/"
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 0))
        usleep(20_000)
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 1))
        #expect(server.requests == 2, "one GET per call: the retry only happens when nothing came back")
    }

    @Test func bytesAfterAResponseAreNeverTheNextAnswer() throws {
        // The endpoint sends a second, unasked-for response after the first (same read or later).
        let server = try ScriptedServer { i in
            i == 0 ? .init(chunks: [ok(#"{"value":0}"#), ok(#"{"value":99}"#)]) : .init(chunks: [ok(#"{"value":\#(i)}"#)])
        }
        let url = "http://127.0.0.1:\(server.port)/"
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 0))
        usleep(20_000)
        #expect(try Fetch.json(Reading.self, from: url) == Reading(value: 1))
        let glued = try ScriptedServer { i in
            i == 0 ? .init(chunks: [ok(#"{"value":0}"#) + ok(#"{"value":99}"#)]) : .init(chunks: [ok(#"{"value":\#(i)}"#)])
        }
        let gluedURL = "http://127.0.0.1:\(glued.port)/"
        #expect(try Fetch.json(Reading.self, from: gluedURL) == Reading(value: 0))
        #expect(try Fetch.json(Reading.self, from: gluedURL) == Reading(value: 1))
        #expect(glued.connections == 2)
    }

    @Test func urlsWithControlCharactersAndHugeBodiesAreRefused() throws {
        #expect { _ = try Fetch.bytes(from: "http://127.0.0.1:1/x\r\nX-Evil: 1") } throws: { "\($0)".contains("control character") }
        #expect { _ = try Fetch.bytes(from: "http://127.0.0.1:1/a b") } throws: { "\($0)".contains("space") }
        let declared = try ScriptedServer { _ in .init(chunks: ["HTTP/1.1 200 OK\r\nContent-Length: 900000000\r\n\r\n{"]) }
        #expect { _ = try Fetch.bytes(from: "http://127.0.0.1:\(declared.port)/") } throws: { "\($0)".contains("larger than") }
        let endless = String(repeating: "x", count: 1 << 20)
        let untilClose = try ScriptedServer { _ in
            .init(chunks: ["HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"] + Array(repeating: endless, count: 10), close: true)
        }
        #expect { _ = try Fetch.bytes(from: "http://127.0.0.1:\(untilClose.port)/") } throws: { "\($0)".contains("larger than") }
    }

    @Test func failuresSayWhatHappened() throws {
        let server = try ScriptedServer { _ in .init(chunks: ["HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"]) }
        #expect {
            _ = try Fetch.json(Reading.self, from: "http://127.0.0.1:\(server.port)/next")
        } throws: { error in
            "\(error)".contains("answered 503: busy")
        }
        #expect { _ = try Fetch.bytes(from: "https://example.org/") } throws: { "\($0)".contains("only http://") }
        let silent = try ScriptedServer { _ in .init(chunks: []) }
        #expect {
            _ = try Fetch.bytes(from: "http://127.0.0.1:\(silent.port)/", timeout: 0.2)
        } throws: { error in
            "\(error)".contains("no answer within 0.2 s")
        }
    }
}
