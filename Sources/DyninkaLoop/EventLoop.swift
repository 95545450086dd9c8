internal import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// One libuv loop. Not thread-safe: everything but `LoopWakeup.wake()` runs on the loop's thread.
package final class EventLoop {
    let raw: UnsafeMutablePointer<uv_loop_t>
    /// The block the next read goes into. Reads are handled synchronously in the read callback,
    /// so one block serves every socket until somebody keeps bytes of it (a request body handed
    /// to a function, a relayed piece the kernel has not taken yet): then the next read goes into
    /// another block, and the kept one's memory comes back to the pool once its last holder lets go.
    package private(set) var readBlock: ReadBlock
    /// Memory of blocks nobody holds, ready for the next switch.
    let blockPool = ReadBlockPool()
    private var closed = false

    package init() throws(LoopError) {
        raw = .allocate(capacity: 1)
        readBlock = ReadBlock(pool: blockPool)
        let result = uv_loop_init(raw)
        if result < 0 {
            raw.deallocate()
            throw LoopError(code: result, operation: "uv_loop_init")
        }
        raw.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        if !closed { close() }
        raw.deallocate()
    }

    /// The block to read into now: the current one unless something still holds it (then a new
    /// block on memory from the pool: no scan of the held ones, whatever their number).
    @inline(__always)
    package func blockForRead() -> ReadBlock {
        if isKnownUniquelyReferenced(&readBlock) { return readBlock }
        return switchBlock()
    }

    /// The block held before the current one: when few requests are in flight it is free again
    /// by the next switch, and the two take turns with no allocation.
    private var previousBlock: ReadBlock?

    private func switchBlock() -> ReadBlock {
        if previousBlock != nil, isKnownUniquelyReferenced(&previousBlock!) {
            swap(&readBlock, &previousBlock!)
        } else {
            // Still held too (many requests in flight): a new block; the one held longest goes
            // back to the pool once its holders let go.
            previousBlock = readBlock
            readBlock = ReadBlock(pool: blockPool)
        }
        return readBlock
    }

    /// Read blocks made since the loop started (the first included): how often held bytes made
    /// the loop read into a new block. For tests and metrics.
    package var blocksMade: Int { blockPool.made }

    /// Read blocks the loop has now: the current one, those still held, and free memory kept.
    package var blockCount: Int { blockPool.live + blockPool.free.count }

    /// Runs until `stop()` is called or nothing is left to do.
    package func run() {
        uv_run(raw, UV_RUN_DEFAULT)
    }

    /// Runs one iteration without blocking; returns true when handles are still active.
    @discardableResult
    package func runOnce() -> Bool {
        uv_run(raw, UV_RUN_NOWAIT) != 0
    }

    /// Makes `run()` return after the current iteration.
    package func stop() {
        uv_stop(raw)
    }

    /// Monotonic nanoseconds, for measuring durations.
    package static func nanoseconds() -> UInt64 { uv_hrtime() }

    /// Fills `buffer` from the system's random source (getrandom(2), through libuv), at once;
    /// false when it cannot.
    package static func randomBytes(_ buffer: UnsafeMutableRawBufferPointer) -> Bool {
        guard let base = buffer.baseAddress else { return true }
        return uv_random(nil, nil, base, buffer.count, 0, nil) == 0
    }

    /// Monotonic time in seconds (the same clock as `nanoseconds`).
    package static func seconds() -> Double { Double(uv_hrtime()) / 1e9 }

    /// Handles the loop still has (open or closing): 0 once everything made on it is closed and
    /// its close callback has run. For tests that check nothing leaks.
    package var handleCount: Int {
        var count = 0
        withUnsafeMutablePointer(to: &count) { pointer in
            uv_walk(raw, { _, argument in
                argument!.assumingMemoryBound(to: Int.self).pointee += 1
            }, pointer)
        }
        return count
    }

    /// Closes the loop once every handle is closed; pending close callbacks run first.
    package func close() {
        guard !closed else { return }
        closed = true
        // Let close callbacks of already-closing handles run.
        while uv_loop_close(raw) == UV_EBUSY.rawValue {
            uv_walk(raw, { handle, _ in
                if let handle, uv_is_closing(handle) == 0 { uv_close(handle, nil) }
            }, nil)
            uv_run(raw, UV_RUN_NOWAIT)
        }
    }
}

extension EventLoop {
    static func from(_ loop: UnsafeMutablePointer<uv_loop_t>?) -> EventLoop {
        Unmanaged<EventLoop>.fromOpaque(loop!.pointee.data!).takeUnretainedValue()
    }
}
