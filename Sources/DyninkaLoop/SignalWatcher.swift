internal import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// Runs a callback on the loop when the process receives a signal.
package final class SignalWatcher {
    let raw: UnsafeMutablePointer<uv_signal_t>
    private var callback: ((Int32) -> Void)?
    private var closing = false

    package init(loop: EventLoop, signal: Int32, _ callback: @escaping (Int32) -> Void) throws(LoopError) {
        raw = .allocate(capacity: 1)
        let result = uv_signal_init(loop.raw, raw)
        if result < 0 {
            raw.deallocate()
            throw LoopError(code: result, operation: "uv_signal_init")
        }
        self.callback = callback
        raw.pointee.data = Unmanaged.passRetained(self).toOpaque()
        try uvCheck(uv_signal_start(raw, { raw, signum in
            Unmanaged<SignalWatcher>.fromOpaque(raw!.pointee.data!).takeUnretainedValue().callback?(signum)
        }, signal), "watch signal \(signal)")
        // A parent may have started us with the signal blocked (some process launchers do);
        // libuv's handler would then never run.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        // A signal watcher alone must not keep the loop running.
        uv_unref(dyn_signal_handle(raw))
    }

    deinit { raw.deallocate() }

    package func close() {
        guard !closing else { return }
        closing = true
        uv_close(dyn_signal_handle(raw)) { handle in
            let this = Unmanaged<SignalWatcher>.fromOpaque(handle!.pointee.data!).takeRetainedValue()
            this.callback = nil
        }
    }
}
