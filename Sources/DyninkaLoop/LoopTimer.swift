internal import CLibUV

/// A libuv timer. Lives until `close()` has completed.
package final class LoopTimer {
    let raw: UnsafeMutablePointer<uv_timer_t>
    private var callback: (() -> Void)?
    private var closing = false

    package init(loop: EventLoop) throws(LoopError) {
        raw = .allocate(capacity: 1)
        let result = uv_timer_init(loop.raw, raw)
        if result < 0 {
            raw.deallocate()
            throw LoopError(code: result, operation: "uv_timer_init")
        }
        raw.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    deinit { raw.deallocate() }

    /// Fires after `milliseconds`, then every `repeat` milliseconds when non-zero.
    package func start(after milliseconds: UInt64, repeat: UInt64 = 0, _ callback: @escaping () -> Void) {
        guard !closing else { return }
        self.callback = callback
        uv_timer_start(raw, { raw in
            Unmanaged<LoopTimer>.fromOpaque(raw!.pointee.data!).takeUnretainedValue().callback?()
        }, milliseconds, `repeat`)
    }

    /// Stops the timer from keeping the loop alive on its own.
    package func unref() { uv_unref(dyn_timer_handle(raw)) }

    package func stop() { uv_timer_stop(raw) }

    package func close() {
        guard !closing else { return }
        closing = true
        uv_close(dyn_timer_handle(raw)) { handle in
            let this = Unmanaged<LoopTimer>.fromOpaque(handle!.pointee.data!).takeRetainedValue()
            this.callback = nil
        }
    }
}
