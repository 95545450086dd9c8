/// A POSIX ustar archive written byte for byte, the same bytes for the same entries: no time,
/// user or order of this machine gets in (container image layers are identified by their digest).
package struct TarArchive {
    /// One entry.
    package struct Entry: Sendable {
        package enum Kind: Sendable { case file([UInt8]), directory, symlink(String) }
        /// The path inside the archive, without a leading slash.
        package var path: String
        package var kind: Kind
        package var mode: Int
        package var owner: Int = 0

        package init(path: String, kind: Kind, mode: Int, owner: Int = 0) {
            self.path = path.hasPrefix("/") ? String(path.dropFirst()) : path
            self.kind = kind
            self.mode = mode
            self.owner = owner
        }
    }

    /// Why an entry cannot be written.
    package struct Failure: Error, CustomStringConvertible, Sendable {
        package var description: String
    }

    /// Every entry's timestamp (2025-12-07T00:00:00Z): fixed, so the digest depends on the content only.
    package static let fixedTime = 1_765_065_600

    /// The archive of `entries`, sorted by path, ended by two zero blocks.
    package static func bytes(_ entries: [Entry]) throws(Failure) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(entries.reduce(0) { total, entry in
            if case .file(let data) = entry.kind { return total + 512 + (data.count + 511) / 512 * 512 }
            return total + 512
        } + 1024)
        for entry in entries.sorted(by: { $0.path < $1.path }) {
            try append(entry, to: &out)
        }
        out += [UInt8](repeating: 0, count: 1024)
        return out
    }

    private static func append(_ entry: Entry, to out: inout [UInt8]) throws(Failure) {
        var header = [UInt8](repeating: 0, count: 512)
        var name = entry.path
        if case .directory = entry.kind, !name.hasSuffix("/") { name += "/" }
        let (prefix, rest) = try split(name)
        func put(_ text: String, at offset: Int, width: Int) {
            for (i, byte) in text.utf8.prefix(width).enumerated() { header[offset + i] = byte }
        }
        func octal(_ value: Int, at offset: Int, width: Int) {
            let digits = String(value, radix: 8)
            put(String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits, at: offset, width: width - 1)
        }
        var size = 0, type: UInt8 = UInt8(ascii: "0"), link = ""
        switch entry.kind {
        case .file(let data): size = data.count
        case .directory: type = UInt8(ascii: "5")
        case .symlink(let target):
            type = UInt8(ascii: "2")
            link = target
            guard target.utf8.count <= 100 else { throw Failure(description: "link target of \(entry.path) is longer than 100 bytes") }
        }
        put(rest, at: 0, width: 100)
        octal(entry.mode, at: 100, width: 8)
        octal(entry.owner, at: 108, width: 8)
        octal(entry.owner, at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(fixedTime, at: 136, width: 12)
        header[156] = type
        put(link, at: 157, width: 100)
        put("ustar", at: 257, width: 6)
        put("00", at: 263, width: 2)
        put(entry.owner == 0 ? "root" : "nonroot", at: 265, width: 32)
        put(entry.owner == 0 ? "root" : "nonroot", at: 297, width: 32)
        put(prefix, at: 345, width: 155)
        // The checksum counts its own field as spaces.
        for i in 148..<156 { header[i] = 32 }
        let sum = header.reduce(0) { $0 + Int($1) }
        let digits = String(sum, radix: 8)
        put(String(repeating: "0", count: max(0, 6 - digits.count)) + digits, at: 148, width: 6)
        header[154] = 0
        header[155] = 32
        out += header
        if case .file(let data) = entry.kind {
            out += data
            out += [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
        }
    }

    /// A path as ustar's prefix (up to 155 bytes) and name (up to 100), split at a slash.
    private static func split(_ path: String) throws(Failure) -> (String, String) {
        let bytes = Array(path.utf8)
        if bytes.count <= 100 { return ("", path) }
        for (i, byte) in bytes.enumerated().reversed() where byte == UInt8(ascii: "/") && i < bytes.count - 1 && i <= 155 && bytes.count - i - 1 <= 100 && i > 0 {
            return (String(decoding: bytes[..<i], as: UTF8.self), String(decoding: bytes[(i + 1)...], as: UTF8.self))
        }
        throw Failure(description: "\(path) is too long for a ustar archive")
    }
}
