/// Bytes that something keeps alive: a view plus its owner.
///
/// The one way the host passes bytes it does not copy: a request body inside the read block it
/// arrived in, a function's output in the app library's memory, a relayed piece of a response, a
/// head being written. Holding the value holds the owner (one retain); the bytes stay valid as
/// long as it is held. A nil owner means the bytes are static or borrowed for one call only.
package struct OwnedBytes {
    /// What keeps `bytes` valid; nil for static bytes or bytes borrowed for the current call.
    package let owner: AnyObject?
    /// The bytes.
    package let bytes: UnsafeRawBufferPointer

    package init(_ bytes: UnsafeRawBufferPointer, owner: AnyObject?) {
        self.owner = owner
        self.bytes = bytes
    }

    /// No bytes.
    package static var empty: OwnedBytes { OwnedBytes(UnsafeRawBufferPointer(start: nil, count: 0), owner: nil) }

    /// Number of bytes.
    package var count: Int { bytes.count }

    /// The bytes from `range`, kept alive by the same owner.
    package subscript(range: Range<Int>) -> OwnedBytes {
        OwnedBytes(UnsafeRawBufferPointer(rebasing: bytes[range]), owner: owner)
    }
}

/// A block the loop reads sockets into (64 KiB). Bytes read into it are valid during the read
/// callback; whoever keeps an `OwnedBytes` of it keeps them valid longer, and the loop reads into
/// another block meanwhile. When the last holder lets go, the memory returns to the loop's pool.
/// Held and let go on the loop's thread only.
package final class ReadBlock {
    /// Bytes per block: what one read may return.
    package static let size = 64 * 1024
    package let base: UnsafeMutableRawPointer
    private let pool: ReadBlockPool

    init(pool: ReadBlockPool) {
        self.pool = pool
        base = pool.take()
    }

    deinit { pool.give(base) }

    /// Whether `bytes` lie inside this block.
    package func contains(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let start = bytes.baseAddress else { return false }
        return start >= UnsafeRawPointer(base) && start + bytes.count <= UnsafeRawPointer(base) + Self.size
    }

    /// `bytes` (inside this block) as bytes this block keeps alive.
    @inline(__always)
    package func own(_ bytes: UnsafeRawBufferPointer) -> OwnedBytes {
        assert(contains(bytes), "bytes outside the read block")
        return OwnedBytes(bytes, owner: self)
    }
}

/// The memory of read blocks: taken for a new block, given back when the block is gone, and
/// kept (a few) for the next one rather than freed.
final class ReadBlockPool {
    /// Free block memory kept for reuse.
    private(set) var free: [UnsafeMutableRawPointer] = []
    /// Blocks alive now (current and held).
    private(set) var live = 0
    /// Blocks made since the start.
    private(set) var made = 0
    /// Free memory kept at most (16 blocks, 1 MiB).
    static let spare = 16

    func take() -> UnsafeMutableRawPointer {
        live += 1
        made += 1
        return free.popLast() ?? .allocate(byteCount: ReadBlock.size, alignment: 16)
    }

    func give(_ base: UnsafeMutableRawPointer) {
        live -= 1
        if free.count < Self.spare { free.append(base) } else { base.deallocate() }
    }

    deinit { for base in free { base.deallocate() } }
}
