import Foundation
// libFuzzer target over the HTTP layer, the route parser and the live view's span ingest and
// trace renderer (built by scripts/fuzz, not by SwiftPM). The first byte picks the target; the
// rest is the input. Properties checked:
//  - the HTTP parsers never crash, and a request fed whole or split gives the same result;
//  - a route that parses prints back to source that parses to the same chain;
//  - spans from anyone (OTLP/JSON bytes, or any shape of ids, parents and times) never crash
//    the renderer, which draws every span at most once, plus a line per cycle, repeat or cut.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 1 else { return 0 }
    let bytes = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    switch data[0] % 6 {
    case 0:
        // Two more bytes give where the request is split: every offset of an input up to 64 KiB
        // can be chosen (the selector byte alone only reached multiples of 4 below 256).
        guard size > 3 else { return 0 }
        let request = UnsafeRawBufferPointer(start: data + 3, count: size - 3)
        let choice = Int(data[1]) << 8 | Int(data[2])
        fuzzRequest(request, split: choice % (request.count + 1))
    case 1: fuzzResponse(bytes)
    case 2: fuzzRoute(String(decoding: bytes, as: UTF8.self))
    case 3: fuzzArguments(String(decoding: bytes, as: UTF8.self))
    case 4: fuzzSpanShapes(bytes)
    default: fuzzOTLP(bytes)
    }
    return 0
}

final class Sink: HTTPParserDelegate {
    var heads = 0
    var body = 0
    func parserHead(_ head: HTTPHead) {
        heads += 1
        _ = head.value(of: "dyninka-route")
        _ = head.allFields
    }
    func parserBody(_ bytes: UnsafeRawBufferPointer) { body += bytes.count }
}

func outcome(_ parser: HTTPParser, _ chunks: [UnsafeRawBufferPointer]) -> String {
    let sink = Sink()
    parser.delegate = sink
    var results: [String] = []
    for chunk in chunks {
        var rest = chunk
        while true {
            let result = parser.feed(rest)
            if case .messageComplete(let consumed) = result {
                results.append("complete")
                parser.resume()
                if consumed >= rest.count || consumed <= 0 { break }
                rest = UnsafeRawBufferPointer(rebasing: rest[consumed...])
                continue
            }
            if case .failed(let error) = result { results.append("failed \(error.status)"); return results.joined() + " \(sink.heads)" }
            break
        }
    }
    return results.joined(separator: ",") + " \(sink.heads) \(sink.body)"
}

func fuzzRequest(_ bytes: UnsafeRawBufferPointer, split: Int) {
    let whole = outcome(HTTPParser(kind: .request, maxHeaderBytes: 2048, maxBodyBytes: 4096), [bytes])
    let parts = outcome(HTTPParser(kind: .request, maxHeaderBytes: 2048, maxBodyBytes: 4096),
                        [UnsafeRawBufferPointer(rebasing: bytes[..<split]), UnsafeRawBufferPointer(rebasing: bytes[split...])])
    // A request with two faults (a header section over the limit and a bad byte in it) may be
    // refused for either, depending on where the bytes were cut: llhttp reports a header span when
    // a read ends inside it. Both must be refusals after the same complete messages.
    if whole != parts && normalized(whole) != normalized(parts) {
        fatalError("split at \(split) changes the result: \(whole) vs \(parts)")
    }
}

/// An outcome with the status of a refusal left out (400, 413 and 431 are all refusals).
func normalized(_ outcome: String) -> String {
    var out = Substring(outcome)
    var result = ""
    while let range = out.firstRange(of: "failed 4") {
        result += out[..<range.upperBound]
        out = out[range.upperBound...].dropFirst(2)
    }
    return result + out
}

func fuzzResponse(_ bytes: UnsafeRawBufferPointer) {
    let parser = HTTPParser(kind: .response, maxHeaderBytes: 2048, maxBodyBytes: 4096)
    _ = outcome(parser, [bytes])
    _ = parser.finish()
}

func fuzzRoute(_ text: String) {
    let parser = RouteParser(maxLength: 512, maxDepth: 4)
    guard let chain = try? parser.parseChain(text) else { return }
    guard let again = try? parser.parseChain(chain.source), again == chain else {
        fatalError("route '\(text)' printed as '\(chain.source)' does not parse back to the same chain")
    }
    _ = chain.callCount
}

func fuzzArguments(_ text: String) {
    _ = try? RouteParser(maxLength: 512, maxDepth: 4).parseArguments(text)
}

/// Every 4 bytes are one span: its id and its parent's (from a small alphabet, so that ids repeat
/// and parents form cycles), and its start and end (which may be in either order).
func fuzzSpanShapes(_ bytes: UnsafeRawBufferPointer) {
    var spans: [TraceSpan] = []
    var at = 0
    while at + 4 <= bytes.count, spans.count < 512 {
        let id = String(bytes[at] % 16), parent = bytes[at + 1] % 20
        spans.append(TraceSpan(traceID: "t", spanID: id, parentID: parent >= 16 ? nil : String(parent), name: "s\(id)",
                               start: UInt64(bytes[at + 2]) << 56, end: UInt64(bytes[at + 3]) << 8, function: UInt64(bytes[at + 3]),
                               status: 200, next: bytes[at] & 1 == 0 ? "s\(parent)" : nil,
                               forwardStart: UInt64(bytes[at + 2]), failedService: nil, message: nil))
        at += 4
    }
    check(spans)
}

func fuzzOTLP(_ bytes: UnsafeRawBufferPointer) {
    let store = SpanStore(capacity: 64)
    store.ingest(otlp: Data(bytes))
    for root in store.recentRoots(8) { check(store.trace(root.traceID)) }
    _ = store.recentFailures(8)
}

func check(_ spans: [TraceSpan]) {
    let lines = TraceTree.render(spans)
    // A line per span, and at most one more per span for a cycle marker, a repeat or a cut.
    if lines.count > 4 * spans.count + 2 { fatalError("\(spans.count) spans drew \(lines.count) lines") }
}
