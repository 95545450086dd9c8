internal import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address with a port.
package struct SocketAddress: CustomStringConvertible, Sendable {
    var storage = sockaddr_storage()

    /// Parses a numeric IP address ("127.0.0.1", "::1"); throws for host names.
    package init(ip: String, port: Int) throws(LoopError) {
        var storage = sockaddr_storage()
        let r4 = withUnsafeMutableBytes(of: &storage) {
            uv_ip4_addr(ip, Int32(port), $0.baseAddress!.assumingMemoryBound(to: sockaddr_in.self))
        }
        if r4 != 0 {
            let r6 = withUnsafeMutableBytes(of: &storage) {
                uv_ip6_addr(ip, Int32(port), $0.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self))
            }
            try uvCheck(r6, "parse address '\(ip)'")
        }
        self.storage = storage
    }

    init(storage: sockaddr_storage) { self.storage = storage }

    init?(_ address: UnsafePointer<sockaddr>) {
        var storage = sockaddr_storage()
        let size = address.pointee.sa_family == sa_family_t(AF_INET6)
            ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
        withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: address, count: size)) }
        self.storage = storage
    }

    /// The port number.
    package var port: Int {
        withUnsafeBytes(of: storage) { raw in
            if storage.ss_family == sa_family_t(AF_INET6) {
                return Int(UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port))
            }
            return Int(UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port))
        }
    }

    /// Numeric host part, for example "127.0.0.1".
    package var host: String {
        var buffer = [CChar](repeating: 0, count: 64)
        withUnsafeBytes(of: storage) { raw in
            if storage.ss_family == sa_family_t(AF_INET6) {
                var a = raw.load(as: sockaddr_in6.self)
                _ = uv_ip6_name(&a, &buffer, buffer.count)
            } else {
                var a = raw.load(as: sockaddr_in.self)
                _ = uv_ip4_name(&a, &buffer, buffer.count)
            }
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    package var description: String {
        storage.ss_family == sa_family_t(AF_INET6) ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
