import Testing
@testable import DyninkaHTTP

/// Collects what the parser reports, so tests can assert on it.
final class Recorder: HTTPParserDelegate {
    var heads: [HTTPHead] = []
    var body: [UInt8] = []
    func parserHead(_ head: HTTPHead) { heads.append(head) }
    func parserBody(_ bytes: UnsafeRawBufferPointer) { body.append(contentsOf: bytes) }
}

/// Feeds `chunks` in order and returns the results of each feed.
func feed(_ parser: HTTPParser, _ chunks: [[UInt8]]) -> [HTTPFeedResult] {
    chunks.map { chunk in chunk.withUnsafeBytes { parser.feed($0) } }
}

let request = Array("POST /path?q=1 HTTP/1.1\r\nHost: a\r\nDyninka-Route: map().movingAvg()\r\nDyninka-Args: \r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"value\":1.5}".utf8)

@Suite struct HTTPParserTests {
    @Test func requestSplitAtEveryPositionParsesTheSame() {
        for split in 0...request.count {
            let parser = HTTPParser(kind: .request)
            let recorder = Recorder()
            parser.delegate = recorder
            let results = feed(parser, [Array(request[..<split]), Array(request[split...])])
            #expect(results.last == .messageComplete(consumed: request.count - split) || results.first == .messageComplete(consumed: split),
                    "split at \(split): \(results)")
            #expect(recorder.heads.count == 1)
            let head = recorder.heads[0]
            #expect(head.method == "POST")
            #expect(head.target == "/path?q=1")
            #expect(head.value(of: "dyninka-route") == "map().movingAvg()", "split at \(split)")
            #expect(head.value(of: "DYNINKA-ARGS") == "", "split at \(split)")
            #expect(head.value(of: "content-type") == "application/json", "split at \(split)")
            #expect(head.contentLength == 13)
            #expect(head.fieldCount == 5, "split at \(split): \(head.allFields)")
            #expect(String(decoding: recorder.body, as: UTF8.self) == "{\"value\":1.5}")
        }
    }

    @Test func theHeaderLimitDoesNotDependOnHowTheBytesArrive() {
        // A head that fits its limit exactly when whole must fit when fed byte by byte too
        // (a field name cut by a read once counted its ": " and CRLF again).
        let head = Array("GET / HTTP/1.1\r\nX-Long-Field-Name: v\r\nAnother-Long-Field: w\r\n\r\n".utf8)
        let whole = HTTPParser(kind: .request, maxHeaderBytes: 1024)
        let wholeResult = feed(whole, [head]).last
        guard case .messageComplete = wholeResult else { Issue.record("whole: \(String(describing: wholeResult))"); return }
        // The smallest limit the whole head passes.
        var limit = 1
        while true {
            let parser = HTTPParser(kind: .request, maxHeaderBytes: limit)
            if case .messageComplete = feed(parser, [head]).last { break }
            limit += 1
        }
        let bytewise = HTTPParser(kind: .request, maxHeaderBytes: limit)
        let results = feed(bytewise, head.map { [$0] })
        #expect(results.last == .messageComplete(consumed: 1), "at the limit \(limit), byte by byte: \(String(describing: results.last))")
    }

    @Test func responseSplitAtEveryPositionParsesTheSame() {
        let response = Array("HTTP/1.1 502 Bad Gateway\r\nServer-Timing: a;dur=1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".utf8)
        for split in 0...response.count {
            let parser = HTTPParser(kind: .response)
            let recorder = Recorder()
            parser.delegate = recorder
            let results = feed(parser, [Array(response[..<split]), Array(response[split...])])
            #expect(results.contains { if case .messageComplete = $0 { true } else { false } }, "split at \(split)")
            #expect(recorder.heads.first?.status == 502)
            #expect(recorder.heads.first?.value(of: "server-timing") == "a;dur=1")
            #expect(recorder.body == Array("hello".utf8))
        }
    }

    @Test func responseWithoutLengthEndsAtConnectionClose() {
        let parser = HTTPParser(kind: .response)
        let recorder = Recorder()
        parser.delegate = recorder
        #expect(feed(parser, [Array("HTTP/1.1 200 OK\r\n\r\nabc".utf8)]) == [.needMore])
        #expect(parser.finish() == .messageComplete(consumed: 0))
        #expect(recorder.body == Array("abc".utf8))
    }

    @Test func pipelinedRequestsPauseAfterTheFirst() {
        let one = Array("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
        let parser = HTTPParser(kind: .request)
        let recorder = Recorder()
        parser.delegate = recorder
        let results = feed(parser, [one + one])
        #expect(results == [.messageComplete(consumed: one.count)])
        #expect(recorder.heads.count == 1)
        parser.resume()
        #expect(feed(parser, [one]) == [.messageComplete(consumed: one.count)])
        #expect(recorder.heads.count == 2)
        #expect(recorder.heads[1].keepAlive)
    }

    @Test func connectionCloseIsNotKeepAlive() {
        let parser = HTTPParser(kind: .request)
        let recorder = Recorder()
        parser.delegate = recorder
        _ = feed(parser, [Array("GET / HTTP/1.1\r\nConnection: close\r\n\r\n".utf8)])
        #expect(recorder.heads.first?.keepAlive == false)
    }

    @Test func oversizedHeadersAreRefusedWith431() {
        let parser = HTTPParser(kind: .request, maxHeaderBytes: 1024)
        let big = "GET / HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 2000))\r\n\r\n"
        let results = feed(parser, [Array(big.utf8)])
        #expect(results == [.failed(.headersTooLarge(limit: 1024))])
        #expect(HTTPParseError.headersTooLarge(limit: 1024).status == 431)
    }

    @Test func oversizedHeadersAreRefusedEvenWhenTrickledByteByByte() {
        let parser = HTTPParser(kind: .request, maxHeaderBytes: 1024)
        let big = Array("GET / HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 2000))\r\n\r\n".utf8)
        let results = feed(parser, big.map { [$0] })
        #expect(results.contains(.failed(.headersTooLarge(limit: 1024))))
    }

    @Test func declaredBodyOverTheLimitIsRefusedBeforeItArrives() {
        let parser = HTTPParser(kind: .request, maxBodyBytes: 100)
        let results = feed(parser, [Array("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n".utf8)])
        #expect(results == [.failed(.bodyTooLarge(limit: 100))])
        #expect(HTTPParseError.bodyTooLarge(limit: 100).status == 413)
    }

    @Test func chunkedBodyOverTheLimitIsRefused() {
        let parser = HTTPParser(kind: .request, maxBodyBytes: 10)
        let results = feed(parser, [Array("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n".utf8)])
        #expect(results == [.failed(.bodyTooLarge(limit: 10))])
    }

    @Test(arguments: [
        "GARBAGE\r\n\r\n",
        "GET / HTTP/9.9\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\nb\r\n\r\n",
    ])
    func malformedRequestsFailWith400(_ text: String) {
        let parser = HTTPParser(kind: .request)
        let results = feed(parser, [Array(text.utf8)])
        guard case .failed(let error)? = results.last else {
            Issue.record("expected a failure for \(text.debugDescription), got \(results)")
            return
        }
        #expect(error.status == 400)
    }

    @Test func truncatedRequestIsIncompleteAtEOF() {
        let parser = HTTPParser(kind: .request)
        _ = feed(parser, [Array("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc".utf8)])
        #expect(parser.finish() == .failed(.incomplete))
    }
}

@Suite struct HTTPWriterTests {
    @Test func responseHeadHasStatusFieldsLengthAndConnection() {
        let head = HTTPWriter.responseHead(status: 204, fields: [("Server-Timing", "a;dur=1")], contentLength: 0, keepAlive: false)
        #expect(head.string == "HTTP/1.1 204 No Content\r\nServer-Timing: a;dur=1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    }

    @Test func fieldValuesCannotSplitTheHead() {
        let head = HTTPWriter.requestHead(method: "POST", target: "/", host: "h:1", fields: [("Dyninka-Route", "a()\r\nEvil: 1")], contentLength: 0)
        #expect(!head.string.contains("\r\nEvil"))
        #expect(head.string.hasPrefix("POST / HTTP/1.1\r\nHost: h:1\r\nDyninka-Route: a() Evil: 1\r\n"))
    }

    @Test func noPartOfTheRequestLineOrAFieldNameCanSplitTheHead() {
        #expect(HTTPWriter.requestHead(method: "GET\r\nX", target: "/", host: "h", fields: [], contentLength: nil).string.hasPrefix("GET%0D%0AX / "))
        let head = HTTPWriter.requestHead(method: "GET", target: "/a b\r\nEvil: 1", host: "h:1\r\nEvil: 2",
                                          fields: [("Na:me\r\nEvil", "v")], contentLength: nil, keepAlive: true)
        #expect(head.string == "GET /a%20b%0D%0AEvil:%201 HTTP/1.1\r\nHost: h:1%0D%0AEvil:%202\r\nNa-me--Evil: v\r\n\r\n", "\(head.string)")
        // Parsed back: one request, its fields only.
        let parser = HTTPParser(kind: .request)
        let recorder = Recorder()
        parser.delegate = recorder
        _ = head.bytes.withMemoryRebound(to: UInt8.self) { feed(parser, [Array($0)]) }
        #expect(recorder.heads.first.map { $0.allFields.map(\.name) } ?? [] == ["Host", "Na-me--Evil"])
    }

    @Test func writtenHeadsParseBack() {
        let head = HTTPWriter.requestHead(method: "POST", target: "/", host: "h:1", fields: [("Dyninka-Route", "map()")], contentLength: 2)
        head.append("{}")
        let parser = HTTPParser(kind: .request)
        let recorder = Recorder()
        parser.delegate = recorder
        let results = head.bytes.withMemoryRebound(to: UInt8.self) { feed(parser, [Array($0)]) }
        #expect(results == [.messageComplete(consumed: head.count)])
        #expect(recorder.heads.first?.value(of: "dyninka-route") == "map()")
        #expect(recorder.heads.first?.keepAlive == false)
    }

    @Test(arguments: [0, 7, -42, 1_048_576, Int.max, Int.min + 1])
    func decimalsAreWrittenExactly(_ value: Int) {
        let buffer = ByteStore()
        buffer.append(decimal: value)
        #expect(buffer.string == String(value))
    }
}

@Suite struct HTTPMessageTests {
    @Test func wholeResponsesParseAndTruncatedOnesDoNot() throws {
        let whole = Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".utf8)
        let message = try #require(HTTPMessage.response(whole))
        #expect(message.status == 200)
        #expect(message.headers["content-type"] == "application/json")
        #expect(message.body == Array("{}".utf8))
        // A body that ends with the connection.
        let untilClose = HTTPMessage.response(Array("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc".utf8))
        #expect(untilClose?.body == Array("abc".utf8))
        // Cut short: not a response, unless only the head is wanted.
        let cut = Array("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".utf8)
        #expect(HTTPMessage.response(cut) == nil)
        #expect(HTTPMessage.response(cut, headOnly: true)?.status == 200)
        #expect(HTTPMessage.response(Array("garbage\r\n\r\n".utf8)) == nil)
    }
}
