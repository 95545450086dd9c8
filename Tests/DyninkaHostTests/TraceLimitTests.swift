import DyninkaTestSupport
import Foundation
import Synchronization
import Testing
@testable import DyninkaHost

/// What a client can make a host keep and pass on through trace data: bounded, and not
/// predictable.
@Suite struct TraceLimitTests {
    @Test func tracestateKeepsAtMost32WellFormedMembers() {
        let many = (0..<40).map { "k\($0)=v\($0)" }.joined(separator: ",")
        let kept = TraceContext.limitState([many])
        #expect(kept?.split(separator: ",").count == 32)
        #expect(kept?.hasPrefix("k0=v0,k1=v1") == true)
        // Members are trimmed; empty and malformed ones dropped; several fields join.
        #expect(TraceContext.limitState([" a=1 ,, b=2", "=x,novalue,c=", "d=4\t"]) == "a=1,b=2,d=4")
        #expect(TraceContext.limitState([",,, "]) == nil)
        #expect(TraceContext.limitState(["k=" + String(repeating: "v", count: 257)]) == nil, "a value over 256 characters")
    }

    @Test func tracestateIsCutTo512CharactersLongMembersFirst() {
        let long = "big=" + String(repeating: "x", count: 200)
        let small = (0..<30).map { "k\($0)=\(String(repeating: "y", count: 12))" }
        let kept = TraceContext.limitState([([long] + small).joined(separator: ",")])!
        #expect(kept.utf8.count <= 512)
        #expect(!kept.contains("big="), "members over 128 characters go first")
        #expect(kept.hasPrefix("k0="), "then members from the end")
        let huge = TraceContext.limitState([String(repeating: "a=b,", count: 100_000)])!
        #expect(huge.utf8.count <= 512 && huge.split(separator: ",").count <= 32)
    }

    @Test func failureMessagesAreCapped() {
        let route = String(repeating: "map().", count: 2000)
        let failure = ServiceFailure(service: "get", kind: .badRoute, message: "no such route '\(route)'")
        #expect(failure.message.utf8.count <= ServiceFailure.maxMessageBytes)
        #expect(failure.message.hasSuffix("(message cut)"))
        // Multi-byte text is cut on a character boundary.
        let accents = ServiceFailure(service: "get", kind: .badRoute, message: String(repeating: "é", count: 3000))
        #expect(accents.message.utf8.count <= ServiceFailure.maxMessageBytes && accents.message.hasPrefix("ééé"))
        #expect(ServiceFailure(service: "get", kind: .function, message: "short").message == "short")
    }

    /// splitmix64's output function, undone: from one output, its state.
    static func unmix(_ output: UInt64) -> UInt64 {
        func inverse(_ a: UInt64) -> UInt64 {
            var x = a
            for _ in 0..<6 { x = x &* (2 &- a &* x) }
            return x
        }
        var z = output
        z = z ^ (z >> 31) ^ (z >> 62)
        z = z &* inverse(0x94D0_49BB_1331_11EB)
        z = z ^ (z >> 27) ^ (z >> 54)
        z = z &* inverse(0xBF58_476D_1CE4_E5B9)
        z = z ^ (z >> 30) ^ (z >> 60)
        return z
    }

    static func mix(_ state: UInt64) -> UInt64 {
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @Test func oneTraceresponseDoesNotPredictTheNextIDs() throws {
        // The check itself: a splitmix64 sequence is predicted from one output.
        let state: UInt64 = 0x1234_5678_9abc_def0
        #expect(Self.mix(Self.unmix(Self.mix(state)) &+ 0x9E37_79B9_7F4A_7C15) == Self.mix(state &+ 0x9E37_79B9_7F4A_7C15))
        let host = try HostProcess(service: "map", arguments: ["--otlp-file", NSTemporaryDirectory() + "dyninka-ids-\(getpid()).jsonl"])
        defer { unlink(NSTemporaryDirectory() + "dyninka-ids-\(getpid()).jsonl") }
        var predicted = 0
        for _ in 0..<20 {
            let response = try host.client.post(#"{"sensor":"a","variable":"Temperature","value":20}"#, route: "")
            // traceresponse: 00-TRACEID(32)-SPANID(16)-FLAGS; the trace id's halves were drawn one after the other.
            let fields = try #require(response.headers["traceresponse"]).split(separator: "-")
            let high = UInt64(fields[1].prefix(16), radix: 16)!, low = UInt64(fields[1].suffix(16), radix: 16)!
            if Self.mix(Self.unmix(high) &+ 0x9E37_79B9_7F4A_7C15) == low { predicted += 1 }
        }
        #expect(predicted == 0, "\(predicted) of 20 trace ids had a predictable second half")
    }

    @Test func aHugeTracestateIsNotPassedOnWhole() throws {
        let files = ["movingAvg", "map"].map { NSTemporaryDirectory() + "dyninka-state-\($0)-\(getpid()).jsonl" }
        defer { files.forEach { unlink($0) } }
        let cluster = try HostCluster(["movingAvg", "map"], arguments: ["movingAvg": ["--otlp-file", files[0]], "map": ["--otlp-file", files[1]]])
        defer { cluster.stop() }
        let state = (0..<200).map { "vendor\($0)=\(String(repeating: "z", count: 60))" }.joined(separator: ",")
        let response = try cluster["map"].client.post(#"{"sensor":"a","variable":"Temperature","value":20}"#, extra: [
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), ("tracestate", state)])
        #expect(response.status == 200)
        let spans = ReadSpan.await(files, count: 2, trace: "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(spans.count == 2)
        // map keeps the cut state, and movingAvg got only that from map.
        #expect(spans.allSatisfy { $0.traceState == spans[0].traceState && $0.traceState?.hasPrefix("vendor0=") == true })
        for span in spans {
            let kept = span.traceState ?? ""
            #expect(kept.utf8.count <= 512 && kept.split(separator: ",").count <= 32, "\(span.name): \(kept.utf8.count) bytes")
        }
    }
}

extension TraceLimitTests {
    @Test func spansWaitingForASlowReceiverCountAsBufferedBytesAndAreBounded() throws {
        // A receiver that accepts and never answers: the exporter is stuck on its first batch.
        let silent = try SilentListener()
        let host = try HostProcess(service: "map", arguments: ["--otlp-endpoint", "http://127.0.0.1:\(silent.port)/v1/traces"])
        // Spans of the longest trace state kept (512 bytes): the bound is reached after about
        // 6,300 of them. The exporter gives up on a stuck batch after 2 s and frees it, so they
        // must come fast: 4 clients at once, 9,000 requests in all.
        let state = (0..<8).map { "vendor\($0)=\(String(repeating: "s", count: 55))" }.joined(separator: ",")
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for i in 0..<2250 {
                let id = String(format: "%01x%04x", worker, i)
                do {
                    let response = try host.client.post(#"{"sensor":"a","variable":"Temperature","value":20}"#, route: "", extra: [
                        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0\(id)-00f067aa0ba902b7-01"), ("tracestate", state)])
                    if response.status != 200 { failures.withLock { $0.append("\(response)") }; break }
                } catch {
                    failures.withLock { $0.append("\(error)") }
                    break
                }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 }.prefix(3))")
        let buffered = try #require(try metric(host, "dyninka_buffered_bytes"))
        #expect(buffered > 1_000_000, "the spans held for the receiver show: \(buffered)")
        #expect(buffered <= Double(Tracer.maxBytes), "and are bounded: \(buffered)")
        #expect(try metric(host, "dyninka_spans_dropped_total") ?? 0 > 0, "buffered \(buffered)")
    }
}
