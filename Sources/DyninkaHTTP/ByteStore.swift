#if canImport(Glibc)
import Glibc
#endif

/// A growable run of bytes in one heap block, appended with memcpy: where the host composes
/// what it writes (message heads, its own JSON answers) and collects what it must have whole
/// (a dependency's response, a chunked body). Its storage is stable until the next append, so a
/// write can refer to it while the store is kept alive (as the owner of `OwnedBytes`). Bytes
/// that only pass through never go into one.
package final class ByteStore {
    package private(set) var base: UnsafeMutableRawPointer?
    package private(set) var count = 0
    package private(set) var capacity = 0

    package init(capacity: Int = 0) {
        if capacity > 0 { reserve(capacity) }
    }

    deinit { free(base) }

    /// The bytes written so far; valid until the next mutation.
    package var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
    /// A copy of the bytes written so far (safe on a temporary store: `Array(store.bytes)` is not,
    /// as the store may be gone before the copy is made).
    package var array: [UInt8] { Array(bytes) }

    /// Makes room for at least `capacity` bytes in total.
    package func reserve(_ capacity: Int) {
        guard capacity > self.capacity else { return }
        guard let grown = realloc(base, capacity) else { fatalError("out of memory (\(capacity) bytes)") }
        base = grown
        self.capacity = capacity
    }

    package func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        if count + bytes.count > capacity { reserve(max(count + bytes.count, capacity * 2, 256)) }
        (base! + count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        count += bytes.count
    }

    /// Appends a String's UTF-8 bytes. (A literal goes to `append(_: StaticString)`, which needs
    /// no String at all: a head is mostly literals.)
    package func append(string: String) {
        var string = string
        string.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    package func append(_ string: StaticString) {
        append(UnsafeRawBufferPointer(start: string.utf8Start, count: string.utf8CodeUnitCount))
    }

    package func append(decimal value: Int) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { raw in
            var v = value.magnitude
            var i = raw.count
            repeat {
                i -= 1
                raw[i] = UInt8(truncatingIfNeeded: v % 10) + 48
                v /= 10
            } while v > 0
            if value < 0 { i -= 1; raw[i] = 45 }
            append(UnsafeRawBufferPointer(rebasing: raw[i...]))
        }
    }

    /// Forgets the contents but keeps the storage.
    package func removeAll() { count = 0 }

    /// Drops the first `n` bytes, moving the rest to the front (one memmove).
    package func removeFirst(_ n: Int) {
        let n = min(max(n, 0), count)
        guard n > 0 else { return }
        if n < count { memmove(base!, base! + n, count - n) }
        count -= n
    }

    /// Gives the storage back when it grew beyond `limit` bytes (a connection that once held a
    /// large body should not keep that much for its idle life).
    package func shrink(ifLargerThan limit: Int) {
        guard capacity > limit, count == 0 else { return }
        free(base)
        base = nil
        capacity = 0
    }

    /// The contents decoded as UTF-8 (for tests, logs and small values).
    package var string: String { String(decoding: bytes, as: UTF8.self) }

    package func string(_ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }
}
