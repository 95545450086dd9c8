internal import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// One libuv loop. Not thread-safe: everything but `LoopWakeup.wake()` runs on the loop's thread.
package final class EventLoop {
    let raw: UnsafeMutablePointer<uv_loop_t>
    /// Reads are handled synchronously in the read callback, so one buffer serves every socket.
    let readBuffer: UnsafeMutableRawPointer
    static let readBufferSize = 64 * 1024
    private var closed = false

    package init() throws(LoopError) {
        raw = .allocate(capacity: 1)
        readBuffer = .allocate(byteCount: Self.readBufferSize, alignment: 16)
        let result = uv_loop_init(raw)
        if result < 0 {
            raw.deallocate()
            readBuffer.deallocate()
            throw LoopError(code: result, operation: "uv_loop_init")
        }
        raw.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        if !closed { close() }
        raw.deallocate()
        readBuffer.deallocate()
    }

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
