internal import CLibUV
import Synchronization

/// Runs work on the loop, submitted from any thread (libuv's uv_async_t plus a locked queue).
///
/// libuv coalesces wake-ups, so the queue is drained completely on every callback.
package final class LoopWakeup: @unchecked Sendable {
    // The raw handle is only touched by libuv (uv_async_send is thread-safe) and on the loop.
    private let raw: UnsafeMutablePointer<uv_async_t>
    private let queue = Mutex<[@Sendable () -> Void]>([])
    private var closing = false

    package init(loop: EventLoop) throws(LoopError) {
        raw = .allocate(capacity: 1)
        let result = uv_async_init(loop.raw, raw) { raw in
            let this = Unmanaged<LoopWakeup>.fromOpaque(raw!.pointee.data!).takeUnretainedValue()
            this.drain()
        }
        if result < 0 {
            raw.deallocate()
            throw LoopError(code: result, operation: "uv_async_init")
        }
        raw.pointee.data = Unmanaged.passRetained(self).toOpaque()
        // Pending work keeps the loop alive through `pending`, not through the handle itself.
        uv_unref(dyn_async_handle(raw))
    }

    deinit { raw.deallocate() }

    /// Queues `work` to run on the loop thread. Safe from any thread.
    package func submit(_ work: @escaping @Sendable () -> Void) {
        queue.withLock { $0.append(work) }
        uv_async_send(raw)
    }

    private func drain() {
        let work = queue.withLock { queue -> [@Sendable () -> Void] in
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
        for item in work { item() }
    }

    package func close() {
        guard !closing else { return }
        closing = true
        uv_close(dyn_async_handle(raw)) { handle in
            Unmanaged<LoopWakeup>.fromOpaque(handle!.pointee.data!).release()
        }
    }
}
