import DyninkaSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Sends a copy of every batch of spans the view receives to the user's own OTLP/HTTP collector
/// (`dyninka run --otlp-endpoint URL`, or DYNINKA_OTLP_ENDPOINT), as the hosts export them:
/// OTLP/HTTP JSON, `POST /v1/traces`, `Content-Type: application/json`.
///
/// On a thread of its own, from a bounded queue: a slow or absent collector costs the view
/// nothing but the batches that do not fit (counted, and said once in a while).
package final class SpanForwarder: @unchecked Sendable {
    /// Where batches go: an IPv4 address (a name is resolved once, at start), port and path.
    package let host: String
    package let port: Int
    package let path: String
    /// As given, for messages.
    package let url: String
    private let condition = NSCondition()
    /// Guarded by `condition`.
    private var queue: [Data] = []
    private var queuedBytes = 0
    private var stopped = false
    private var sent = 0
    private var dropped = 0
    private var failed = 0
    private let log: @Sendable (String) -> Void

    /// Most bytes of batches waiting for the collector.
    static let maxQueuedBytes = 32 << 20

    /// Why an endpoint cannot be used.
    package struct Failure: Error, CustomStringConvertible, Sendable { package var description: String }

    /// `url`: http://HOST:PORT[/PATH] (the path defaults to /v1/traces, OTLP/HTTP's).
    package init(url: String, log: @escaping @Sendable (String) -> Void) throws(Failure) {
        let usage = "--otlp-endpoint must look like http://HOST:4318/v1/traces (OTLP/HTTP JSON; https is not supported), got '\(url)'"
        guard url.hasPrefix("http://") else { throw Failure(description: usage) }
        let rest = url.dropFirst("http://".count)
        let authority = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(authority.count)
        guard let colon = authority.lastIndex(of: ":"), let port = Int(authority[authority.index(after: colon)...]),
              (1...65535).contains(port), colon != authority.startIndex else { throw Failure(description: usage) }
        let name = String(authority[..<colon])
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &list) == 0, let first = list else {
            throw Failure(description: "--otlp-endpoint: cannot resolve '\(name)' to an IPv4 address")
        }
        defer { freeaddrinfo(list) }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        let address = first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
        var copy = address
        inet_ntop(AF_INET, &copy, &text, socklen_t(INET_ADDRSTRLEN))
        host = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.port = port
        self.path = path.isEmpty ? "/v1/traces" : String(path)
        self.url = url
        self.log = log
        Thread { [self] in run() }.start()
    }

    /// Queues a copy of one batch (an ExportTraceServiceRequest in JSON); drops it when the
    /// queue is full.
    package func forward(_ batch: Data) {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped else { return }
        guard queuedBytes + batch.count <= Self.maxQueuedBytes else {
            dropped += 1
            if dropped == 1 || dropped % 100 == 0 {
                log("the collector at \(url) falls behind: \(dropped) batch(es) of spans not forwarded so far")
            }
            return
        }
        queue.append(batch)
        queuedBytes += batch.count
        condition.signal()
    }

    /// Batches forwarded, dropped (queue full) and refused or failed so far.
    package var counts: (sent: Int, dropped: Int, failed: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (sent, dropped, failed)
    }

    /// Sends what is queued (for at most `seconds`), then stops.
    package func stop(flushing seconds: Double = 2) {
        let limit = Date().addingTimeInterval(seconds)
        condition.lock()
        while !queue.isEmpty && Date() < limit { _ = condition.wait(until: min(limit, Date().addingTimeInterval(0.05))) }
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopped { condition.wait() }
            if stopped {
                condition.unlock()
                return
            }
            let batch = queue.removeFirst()
            condition.unlock()
            let outcome: String?
            do {
                let reply = try BlockingHTTP.request(host: host, port: port, method: "POST", path: path,
                                                     body: String(decoding: batch, as: UTF8.self), timeout: 5)
                outcome = (200..<300).contains(reply.status) ? nil : "it answered \(reply.status): \(reply.text.prefix(200))"
            } catch {
                outcome = error.description
            }
            condition.lock()
            queuedBytes -= batch.count
            if let outcome {
                failed += 1
                if failed == 1 || failed % 100 == 0 { log("cannot forward spans to \(url): \(outcome) (\(failed) batch(es) lost so far)") }
            } else {
                sent += 1
            }
            condition.broadcast()
            condition.unlock()
        }
    }
}
