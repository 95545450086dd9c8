import DyninkaHTTP
import DyninkaLoop

/// A next hop prepared once per route and reused by every request that takes it: where the
/// service listens and the request head up to Content-Length, with the rest of the route.
final class HopTarget {
    /// The service called.
    let service: String
    /// Where it listens; nil when the placement has no address for it (the hop answers 502).
    let address: PeerAddress?
    /// The address when it is numeric, so no per-request parsing or resolution is needed.
    let socketAddress: SocketAddress?
    /// "POST / HTTP/1.1 ... Dyninka-Route: ...\r\nContent-Length: " (immutable after init).
    let headPrefix: ByteBuffer

    init(service: String, address: PeerAddress?, route: String, arguments: String) {
        self.service = service
        self.address = address
        socketAddress = address.flatMap { try? SocketAddress(ip: $0.host, port: $0.port) }
        let head = ByteBuffer(capacity: 128 + route.utf8.count + arguments.utf8.count)
        head.append("POST / HTTP/1.1\r\nHost: ")
        head.append(address?.description ?? service)
        head.append("\r\nContent-Type: application/json\r\n")
        HTTPWriter.appendField("Dyninka-Route", route, to: head)
        if !arguments.isEmpty { HTTPWriter.appendField("Dyninka-Args", arguments, to: head) }
        head.append("Connection: close\r\nContent-Length: ")
        headPrefix = head
    }

    /// The complete request head for a body of `length` bytes.
    func head(contentLength length: Int) -> ByteBuffer {
        let head = ByteBuffer(capacity: headPrefix.count + 24)
        head.append(headPrefix.bytes)
        head.append(decimal: length)
        head.append("\r\n\r\n")
        return head
    }
}

/// How one explicit argument of a call is produced, with everything prepared.
enum PreparedArgument {
    /// Constant JSON bytes, shared by every request.
    case constant(ByteBuffer)
    /// A dependency called before the function runs (fan-in); nil results become `null` when optional.
    case dependency(HopTarget, optional: Bool)
}

/// A checked route with its next hop prepared.
final class RoutePlan {
    let route: CheckedRoute
    /// The first step's target (with the rest of the route), or nil when the route is empty.
    let next: HopTarget?

    init(route: CheckedRoute, next: HopTarget?) {
        self.route = route
        self.next = next
    }
}
