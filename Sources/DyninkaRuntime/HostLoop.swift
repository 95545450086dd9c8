import CDyninkaABI
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The event loop a dyninka-host lends the app library (ABI 2), as a Swift task executor.
///
/// Async services run as tasks that prefer this executor, so their code runs on the host's loop
/// thread: no thread hop to start a service, none to complete it, and `Fetch` goes through the
/// host's non-blocking `exchange` instead of blocking a thread. Jobs enqueued while the loop is
/// inside a call into the library (an entry, an exchange's completion, `run_jobs`) run before
/// that call returns; jobs from other threads (a task that hopped elsewhere and comes back) are
/// queued and the host is woken to run them.
final class HostLoop: TaskExecutor, @unchecked Sendable {
    // `local` and `depth` are touched only on the loop thread; `remote` is locked.
    private let host: dyninka_host
    private let thread: pthread_t
    private var local: [Work] = []
    /// The batch `drain` is running (kept to reuse its storage).
    private var running: [Work] = []
    private var depth = 0
    private let remote = Mutex<[Work]>([])

    /// A job or a closure for the loop thread. A closure crosses threads at most once, to run
    /// there; whatever it captures is then touched only on the loop.
    enum Work: @unchecked Sendable {
        case job(UnownedJob)
        case call(() -> Void)
    }

    /// The attached host's loop, or nil when the app runs as a local program (or under a host
    /// that lends none). Written once, on the loop thread, before the host calls any entry.
    nonisolated(unsafe) static var current: HostLoop?

    private init(host: dyninka_host) {
        self.host = host
        thread = pthread_self()
    }

    /// The table's `attach_host`.
    static func attach(_ host: UnsafePointer<dyninka_host>?) {
        guard let host, current == nil, host.pointee.wake != nil, host.pointee.exchange != nil else { return }
        current = HostLoop(host: host.pointee)
    }

    /// The table's `run_jobs`.
    static func runJobs() {
        guard let loop = current else { return }
        swap(&loop.later, &loop.laterRunning)
        loop.inCallback {
            for body in loop.laterRunning { body() }
            loop.laterRunning.removeAll(keepingCapacity: true)
        }
    }

    var isLoopThread: Bool { pthread_equal(pthread_self(), thread) != 0 }

    func enqueue(_ job: consuming ExecutorJob) {
        submit(.job(UnownedJob(job)))
    }

    /// Runs `body` on the loop thread: now when called there inside a callback, otherwise soon.
    func perform(_ body: @escaping () -> Void) {
        if isLoopThread && depth > 0 { return body() }
        submit(.call(body))
    }

    private func submit(_ work: Work) {
        if isLoopThread && depth > 0 {
            local.append(work)
            return
        }
        let wasEmpty = remote.withLock { queue in
            queue.append(work)
            return queue.count == 1
        }
        if wasEmpty { host.wake?(host.context) }
    }

    /// Work held until the host runs `run_jobs` after this iteration's events (batched sends: a
    /// burst of requests reaches an endpoint together, one wake-up of it instead of one each).
    private var later: [() -> Void] = []
    private var laterRunning: [() -> Void] = []

    /// Runs `body` on the loop thread once the loop has handled the I/O it is handling now.
    func performLater(_ body: @escaping () -> Void) {
        guard isLoopThread, depth > 0 else { return perform(body) }
        later.append(body)
        if later.count == 1 { host.wake?(host.context) }
    }

    /// Runs `body` as a call from the host into the library, then every job it made runnable.
    func inCallback(_ body: () -> Void) {
        depth += 1
        body()
        if depth == 1 { drain() }
        depth -= 1
    }

    private func drain() {
        let executor = asUnownedTaskExecutor()
        while true {
            // Swapping arrays hands over the work without copying or allocating.
            if local.isEmpty {
                remote.withLock { swap(&$0, &local) }
                if local.isEmpty { return }
            }
            swap(&local, &running)
            for work in running {
                switch work {
                case .job(let job): job.runSynchronously(on: executor)
                case .call(let body): body()
                }
            }
            running.removeAll(keepingCapacity: true)
        }
    }

    /// Starts an exchange on the host's loop (loop thread only).
    func exchange(host name: UnsafePointer<CChar>, port: Int32, request: UnsafeRawBufferPointer, timeout: Double,
                  context: UnsafeMutableRawPointer, done: dyninka_exchange_done_fn) {
        let milliseconds = UInt32(clamping: Int((timeout * 1000).rounded(.up)))
        host.exchange?(host.context, name, port, request.baseAddress?.assumingMemoryBound(to: UInt8.self), request.count,
                       milliseconds, context, done)
    }
}
