import CDyninkaCrypto
import DyninkaHTTP
import DyninkaLoop
import DyninkaRoute

/// A next hop prepared once per route and reused by every request that takes it: where the
/// service listens and the request head up to Content-Length, with the rest of the route.
final class HopTarget {
    /// The service called.
    let service: String
    /// Where it listens; nil when the placement has no address for it (the hop answers 502).
    let address: PeerAddress?
    /// The address when it is numeric, so no per-request parsing or resolution is needed.
    /// The peer's numeric address as the list a client connection tries (made once, not per
    /// hop); nil for a name, resolved through the host's cache.
    let numericAddresses: [SocketAddress]?
    /// "POST / HTTP/1.1 ... Dyninka-Route: ...\r\nContent-Length: " (immutable after init).
    let headPrefix: ByteStore
    /// The host's cache entry for a name (set on the first hop; nil for numeric addresses).
    var nameEntry: NameCache.Entry?

    /// What a hop to it signs with the app key: the service, and the route and arguments as
    /// written in the head (nil for a target that is not an app hop).
    private let signed: (service: [UInt8], route: [UInt8], arguments: [UInt8]?)?

    /// The rest of the route after this service, in route syntax, and the call's arguments
    /// ("" for none): what the request's head carries, and what a stage of the same process
    /// (fusion) plans from.
    private(set) var route = ""
    private(set) var arguments = ""
    /// The next stage's plan when it runs in this process (fusion), made by its first request.
    var localPlan: RoutePlan?
    /// Fusion: the stage of this process that serves the target, looked up once (nil: a hop).
    /// Stages live as long as the host.
    private unowned(unsafe) var local: PointToPointResponder?
    private var localResolved = false

    /// The stage of this process that serves the target, or nil when it lives elsewhere.
    @inline(__always)
    func localStage(in context: HostContext) -> PointToPointResponder? {
        if !localResolved {
            local = context.localStage(service)
            localResolved = true
        }
        return local
    }

    /// A hop of the app: `POST /SERVICE`, so that a host serving several services (fusion) knows
    /// which one is called; a host of one service answers there as at `/`.
    convenience init(service: String, address: PeerAddress?, route: String, arguments: String) {
        var fields = [("Dyninka-Route", route)]
        if !arguments.isEmpty { fields.append(("Dyninka-Args", arguments)) }
        self.init(service: service, address: address, path: "/" + service, fields: fields)
        self.route = route
        self.arguments = arguments
    }

    /// `Dyninka-Deadline` (when the request has one) and `Dyninka-Auth` (when the host has a key),
    /// signed over the deadline's digits as written.
    private func writeAppLines(_ hop: AppHop, validFor: Int, into buffer: ByteStore) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        var digitCount = 0
        if let deadline = hop.deadline {
            // The line as every hop writes it; its digits are what the signature covers.
            let written = Deadline.append(milliseconds: deadline, to: buffer)
            digitCount = min(written.count, 24)
            withUnsafeMutableBytes(of: &digits) { $0.baseAddress!.copyMemory(from: buffer.base! + written.lowerBound, byteCount: digitCount) }
        }
        guard let key = hop.key else { return }
        withUnsafeBytes(of: &digits) { raw in
            key.sign(self, deadline: hop.deadline == nil ? nil : UnsafeRawBufferPointer(rebasing: raw[..<digitCount]), validFor: validFor, into: buffer)
        }
    }

    /// Calls `body` with the parts a hop to this target signs (see AppKey).
    func signedParts<R>(_ body: (dyn_part, dyn_part, dyn_part) -> R) -> R {
        let parts = signed ?? (Array(service.utf8), [], nil)
        let route: [UInt8]? = signed == nil ? nil : parts.route
        return withPart(Optional(parts.service)) { service in
            withPart(route) { route in
                withPart(parts.arguments) { arguments in body(service, route, arguments) }
            }
        }
    }

    /// A target posting to `path` with the given header fields.
    init(service: String, address: PeerAddress?, path: String, fields: [(String, String)]) {
        self.service = service
        self.address = address
        numericAddresses = address.flatMap { try? SocketAddress(ip: $0.host, port: $0.port) }.map { [$0] }
        // The writer's head without its Content-Length and end: each request adds those (and its
        // own lines) after this prefix.
        let whole = HTTPWriter.requestHead(method: "POST", target: path, host: address?.description ?? service,
                                           fields: [("Content-Type", "application/json")] + fields + [("Connection", "close")],
                                           contentLength: nil, keepAlive: true)
        let head = ByteStore(capacity: 160)
        whole.array.dropLast(2).withUnsafeBytes { head.append($0) }
        headPrefix = head
        // Signed as the receiver reads it: appendField turns CR and LF into spaces, and the
        // parser drops the spaces and tabs before a value (not after it).
        func written(_ name: String) -> [UInt8]? {
            fields.first { $0.0 == name }.map { field in
                let bytes = field.1.utf8.map { $0 == 13 || $0 == 10 ? 32 : $0 }
                let blank: (UInt8) -> Bool = { $0 == 32 || $0 == 9 }
                return Array(bytes.drop(while: blank))
            }
        }
        signed = written("Dyninka-Route").map { (Array(service.utf8), $0, written("Dyninka-Args")) }
    }

    /// Writes the complete request head for a body of `length` bytes into `buffer` (replacing its
    /// contents), with `extra` header lines (complete "Name: value\r\n" lines) when given, and
    /// `traceparent` naming the caller's span when there is a trace.
    func writeHead(contentLength length: Int, extra: ByteStore?, trace: TraceContext?, appHop: AppHop? = nil, validFor: Int = 0,
                   into buffer: ByteStore) {
        buffer.removeAll()
        buffer.append(headPrefix.bytes)
        if let extra { buffer.append(extra.bytes) }
        if let appHop { writeAppLines(appHop, validFor: validFor, into: buffer) }
        if let trace {
            buffer.append("traceparent: ")
            trace.appendTraceparent(to: buffer)
            buffer.append("\r\n")
            if let state = trace.state {
                buffer.append("tracestate: ")
                buffer.append(string: state)
                buffer.append("\r\n")
            }
        }
        buffer.append("Content-Length: ")
        buffer.append(decimal: length)
        buffer.append("\r\n\r\n")
    }
}

extension ByteStore {
    /// The bytes written so far, kept alive by this store (no copy).
    var owned: OwnedBytes { OwnedBytes(bytes, owner: self) }
}

/// How one explicit argument of a call is produced, with everything prepared.
enum PreparedArgument {
    /// Bytes that came with the request (gateway mode's Dyninka-Parts).
    case given(OwnedBytes)
    /// Constant JSON bytes, shared by every request.
    case constant(ByteStore)
    /// A dependency called before the function runs (fan-in); nil results become `null` when optional.
    case dependency(HopTarget, optional: Bool)
}

/// A checked route with its next hop prepared.
final class RoutePlan {
    let route: CheckedRoute
    /// The first step's target (with the rest of the route), or nil when the route is empty.
    let next: HopTarget?
    /// How many times the request runs each service: this one (once), then the route's calls,
    /// dependencies included.
    let visits: [String: Int]
    /// Service calls the route makes (this service not counted).
    let calls: Int
    /// The service the route runs most often, and how often.
    let mostVisited: (name: String, count: Int)
    /// Whether the route stays within the host's limits together with main's arguments.
    var withDefaultArguments: Result<Void, RouteError> = .success(())

    init(route: CheckedRoute, next: HopTarget?, visits: [String: Int]) {
        self.route = route
        self.next = next
        self.visits = visits
        calls = visits.values.reduce(0, +) - 1
        mostVisited = visits.max { $0.value < $1.value }.map { ($0.key, $0.value) } ?? ("", 0)
    }
}
