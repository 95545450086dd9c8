internal import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// Asynchronous name resolution on libuv's thread pool (never blocks the loop).
package enum Resolver {
    /// Resolves `host` to every TCP address it has, in the order the system prefers (for
    /// `localhost`, often ::1 before 127.0.0.1), without repeats; numeric addresses complete at once.
    package static func resolveAll(loop: EventLoop, host: String, port: Int,
                                   completion: @escaping (Result<[SocketAddress], LoopError>) -> Void) {
        if let numeric = try? SocketAddress(ip: host, port: port) {
            return completion(.success([numeric]))
        }
        final class Box {
            let completion: (Result<[SocketAddress], LoopError>) -> Void
            let host: String
            init(_ c: @escaping (Result<[SocketAddress], LoopError>) -> Void, host: String) { completion = c; self.host = host }
        }
        let request = UnsafeMutablePointer<uv_getaddrinfo_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passRetained(Box(completion, host: host)).toOpaque()
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        let result = uv_getaddrinfo(loop.raw, request, { request, status, info in
            let box = Unmanaged<Box>.fromOpaque(request!.pointee.data!).takeRetainedValue()
            request!.deallocate()
            defer { if let info { uv_freeaddrinfo(info) } }
            var addresses: [SocketAddress] = []
            var next = status == 0 ? info : nil
            while let entry = next {
                if let raw = entry.pointee.ai_addr, let address = SocketAddress(raw),
                   !addresses.contains(where: { $0.description == address.description }) {
                    addresses.append(address)
                }
                next = entry.pointee.ai_next
            }
            guard !addresses.isEmpty else {
                return box.completion(.failure(LoopError(code: status == 0 ? UV_EAI_NONAME.rawValue : status,
                                                         operation: "resolve '\(box.host)'")))
            }
            box.completion(.success(addresses))
        }, host, String(port), &hints)
        if result < 0 {
            Unmanaged<Box>.fromOpaque(request.pointee.data!).release()
            request.deallocate()
            completion(.failure(LoopError(code: result, operation: "resolve '\(host)'")))
        }
    }
}
