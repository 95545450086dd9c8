internal import CLibUV

/// Runs a closure at the end of every loop iteration: once the I/O callbacks of the iteration
/// have run (libuv's check phase) and again just before the loop waits for I/O (the prepare
/// phase), so that work queued anywhere in an iteration is done before the loop sleeps.
///
/// Used to batch: sends queued while handling a burst of events go out together, after the
/// burst, instead of one by one between events. Does not keep the loop alive on its own.
package final class LoopPhaseHook {
    private let check: UnsafeMutablePointer<uv_check_t>
    private let prepare: UnsafeMutablePointer<uv_prepare_t>
    private var body: (() -> Void)?
    private var closing = false

    package init(loop: EventLoop, _ body: @escaping () -> Void) throws(LoopError) {
        check = .allocate(capacity: 1)
        prepare = .allocate(capacity: 1)
        var result = uv_check_init(loop.raw, check)
        if result == 0 { result = uv_prepare_init(loop.raw, prepare) }
        if result < 0 {
            check.deallocate()
            prepare.deallocate()
            throw LoopError(code: result, operation: "uv_check_init")
        }
        self.body = body
        // One reference for each handle, released by its close callback.
        check.pointee.data = Unmanaged.passRetained(self).toOpaque()
        prepare.pointee.data = Unmanaged.passRetained(self).toOpaque()
        uv_check_start(check) { raw in
            Unmanaged<LoopPhaseHook>.fromOpaque(raw!.pointee.data!).takeUnretainedValue().body?()
        }
        uv_prepare_start(prepare) { raw in
            Unmanaged<LoopPhaseHook>.fromOpaque(raw!.pointee.data!).takeUnretainedValue().body?()
        }
        uv_unref(dyn_check_handle(check))
        uv_unref(dyn_prepare_handle(prepare))
    }

    deinit {
        check.deallocate()
        prepare.deallocate()
    }

    package func close() {
        guard !closing else { return }
        closing = true
        body = nil
        uv_close(dyn_check_handle(check)) { handle in
            Unmanaged<LoopPhaseHook>.fromOpaque(handle!.pointee.data!).release()
        }
        uv_close(dyn_prepare_handle(prepare)) { handle in
            Unmanaged<LoopPhaseHook>.fromOpaque(handle!.pointee.data!).release()
        }
    }
}
