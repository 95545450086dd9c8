import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What the kernel says about sockets, read from /proc: whether a process listens on a port,
/// and the handshakes under way to an address (a move waits for those to settle).
package enum ProcNet {
    /// A /proc file read to its end (they report size 0, and may be long: a busy machine has
    /// tens of thousands of sockets in TIME_WAIT).
    package static func readWhole(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// A /proc file's bytes, read to its end.
    package static func readBytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // Read straight into the array, doubling it as needed (no per-chunk copy).
        var bytes = [UInt8](repeating: 0, count: 1 << 18)
        var filled = 0
        while true {
            if filled == bytes.count { bytes += [UInt8](repeating: 0, count: bytes.count) }
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n <= 0 { break }
            filled += n
        }
        bytes.removeSubrange(filled...)
        return bytes
    }

    /// Handshakes to `address:port` under way in `pid`'s network namespace: SYN_RECV entries
    /// (including connections TCP_DEFER_ACCEPT holds until their first bytes). The table may
    /// have tens of thousands of lines (TIME_WAIT), so its bytes are searched, not split.
    package static func handshakes(pid: Int32, address: String, port: Int) -> Int {
        readBytes("/proc/\(pid)/net/tcp").map { handshakes(in: $0, address: address, port: port) } ?? 0
    }

    /// The SYN_RECV entries for `address:port` in the text of a /proc/net/tcp table.
    package static func handshakes(in table: [UInt8], address: String, port: Int) -> Int {
        guard let local = procAddress(address, port: port) else { return 0 }
        // A line: "  sl: LOCAL REMOTE ST ...", each address 13 characters ("0A014D0A:1F90").
        // strstr on the text ended by a NUL: the dyninka CLI is a debug build, where a byte loop
        // in Swift would take milliseconds on a long table.
        let needle = ": " + local + " "
        let text = table + [0]
        var count = 0
        text.withUnsafeBufferPointer { bytes in
            let base = UnsafeRawPointer(bytes.baseAddress!).assumingMemoryBound(to: CChar.self)
            var at = 0
            while at < bytes.count - 1, let found = strstr(base + at, needle) {
                let state = UnsafePointer(found) - base + needle.utf8.count + 14
                guard state + 2 < bytes.count else { break }
                if bytes[state] == UInt8(ascii: "0") && bytes[state + 1] == UInt8(ascii: "3") { count += 1 }
                at = state
            }
        }
        return count
    }

    /// How /proc/net/tcp writes an IPv4 address and port: the address as the hex of its
    /// 32-bit value in host order (little-endian here: the bytes reversed), the port in hex.
    package static func procAddress(_ address: String, port: Int) -> String? {
        let bytes = address.split(separator: ".").compactMap { UInt8($0) }
        guard bytes.count == 4 else { return nil }
        let value = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
        let hex = String(UInt32(littleEndian: value), radix: 16, uppercase: true)
        let portHex = String(port, radix: 16, uppercase: true)
        return String(repeating: "0", count: 8 - hex.count) + hex + ":" + String(repeating: "0", count: max(0, 4 - portHex.count)) + portHex
    }

    /// Whether `pid` holds a listening TCP socket on `port` (read from /proc, in its namespace).
    package static func listens(pid: Int32, port: Int) -> Bool {
        var inodes = Set<String>()
        for table in ["tcp", "tcp6"] {
            guard let text = readWhole("/proc/\(pid)/net/\(table)") else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                guard fields.count > 9, fields[3] == "0A", let colon = fields[1].lastIndex(of: ":"),
                      Int(fields[1][fields[1].index(after: colon)...], radix: 16) == port else { continue }
                inodes.insert(String(fields[9]))
            }
        }
        guard !inodes.isEmpty, let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { return false }
        for fd in fds {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
               target.hasPrefix("socket:["), inodes.contains(String(target.dropFirst(8).dropLast())) { return true }
        }
        return false
    }
}
