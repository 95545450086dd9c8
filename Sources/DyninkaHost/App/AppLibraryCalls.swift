import CDyninkaABI
import DyninkaLoop
#if canImport(Glibc)
import Glibc
#endif

// The C boundary with the app library, in one place with ServiceTable.swift (which loads it):
// calling a service function with a Swift completion, and lending the host's loop. Nothing else
// in the host imports CDyninkaABI.

/// A function's output in the app library's memory, released through its table once the last
/// `OwnedBytes` of it is gone (the answer or the next hop's request is written).
final class LibraryOutput: @unchecked Sendable {
    // Moved from the completing thread to the loop once; only the loop touches it afterwards.
    let data: UnsafeMutablePointer<UInt8>?
    let count: Int
    let release: (@convention(c) (UnsafeMutablePointer<UInt8>?) -> Void)?
    /// The output as a value for the next stage of this process (fusion, ABI 4), unencoded; nil
    /// once taken, or when the output is bytes.
    private var value: UnsafeMutableRawPointer?
    private let releaseValue: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?

    init(data: UnsafeMutablePointer<UInt8>?, count: Int, release: (@convention(c) (UnsafeMutablePointer<UInt8>?) -> Void)?,
         value: UnsafeMutableRawPointer? = nil, releaseValue: (@convention(c) (UnsafeMutableRawPointer?) -> Void)? = nil) {
        self.data = data
        self.count = count
        self.release = release
        self.value = value
        self.releaseValue = releaseValue
    }

    deinit {
        if let data { release?(data) }
        if let value { releaseValue?(value) }
    }

    /// Whether the output is a value for the next stage (not bytes).
    var isValue: Bool { value != nil }

    /// Hands the value over to the next call (which releases it); nil when there is none.
    func takeValue() -> UnsafeMutableRawPointer? {
        defer { value = nil }
        return value
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: data, count: count) }
    /// The output, kept alive by this object (no copy).
    var owned: OwnedBytes { OwnedBytes(bytes, owner: self) }
    var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// How a service function ended.
enum FunctionResult {
    /// It returned a value: the output is its JSON.
    case value
    /// It returned nil: the item is dropped.
    case dropped
    /// Its input or an argument did not decode: the output says why.
    case badInput
    /// It threw: the output is the error's description.
    case threw
}

/// Carries a loop-owned object through a completion submitted from another thread; only the
/// loop touches what it carries.
private struct LoopBound<Value>: @unchecked Sendable {
    let value: Value
}

/// Calls service functions and receives their results on the loop thread. The caller itself is
/// the call's context across the C boundary (retained until the completion): no allocation per
/// call beyond the argument array of a service that has arguments.
class FunctionCaller {
    // Read by a completion on another thread; immutable.
    private let loopThread: pthread_t
    private let wakeup: LoopWakeup
    private let releaseOutput: (@convention(c) (UnsafeMutablePointer<UInt8>?) -> Void)?
    private let releaseValue: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?
    private var argumentArray: UnsafeMutablePointer<dyninka_bytes>?

    init(loopThread: pthread_t, wakeup: LoopWakeup, table: ServiceTable) {
        self.loopThread = loopThread
        self.wakeup = wakeup
        releaseOutput = table.freeBytes
        releaseValue = table.releaseValue
    }

    deinit { argumentArray?.deallocate() }

    /// The function's result, on the loop thread; subclasses override it.
    func functionDone(_ result: FunctionResult, _ output: LibraryOutput) {}

    /// Calls `service`'s function with `input` and `count` arguments (`argument(i)`, nil for an
    /// absent one); false when the service has no entry point. The bytes must stay valid until
    /// `functionDone`. Fusion: `inputValue`, an earlier stage's value, is the input instead (the
    /// call takes it over), and with `wantValue` a returned value comes back unencoded.
    final func call(_ service: ServiceDescriptor, input: UnsafeRawBufferPointer?, inputValue: UnsafeMutableRawPointer? = nil,
                    wantValue: Bool = false, count: Int, argument: (Int) -> UnsafeRawBufferPointer?) -> Bool {
        guard let entry = service.entry else { return false }
        if count > 0 {
            let array = UnsafeMutablePointer<dyninka_bytes>.allocate(capacity: count)
            for i in 0..<count {
                let bytes = argument(i)
                array[i] = dyninka_bytes(data: bytes?.baseAddress?.assumingMemoryBound(to: UInt8.self), length: bytes?.count ?? 0)
            }
            argumentArray = array
        }
        var call = dyninka_call(
            input: dyninka_bytes(data: input?.baseAddress?.assumingMemoryBound(to: UInt8.self), length: input?.count ?? 0),
            arguments: argumentArray.map { UnsafePointer($0) }, argument_count: count,
            context: Unmanaged.passRetained(self).toOpaque(),
            complete: { context, status, data, length in
                // The call's +1 on the caller is given up on the loop thread only: the caller
                // (an Invocation) holds bytes of the loop's read blocks, which go back to the
                // loop's pool when it is gone.
                let unmanaged = Unmanaged<FunctionCaller>.fromOpaque(context!)
                let result: FunctionResult
                switch dyninka_status(UInt32(status)) {
                case DYNINKA_STATUS_OK: result = .value
                case DYNINKA_STATUS_NIL: result = .dropped
                case DYNINKA_STATUS_BAD_INPUT: result = .badInput
                default: result = .threw
                }
                let (release, onLoop, wakeup) = unmanaged._withUnsafeGuaranteedRef { caller in
                    (caller.releaseOutput, pthread_equal(pthread_self(), caller.loopThread) != 0, caller.wakeup)
                }
                let output = LibraryOutput(data: data, count: length, release: release)
                if onLoop {
                    unmanaged.takeRetainedValue().functionDone(result, output)
                } else {
                    let bound = LoopBound(value: unmanaged)
                    wakeup.submit { bound.value.takeRetainedValue().functionDone(result, output) }
                }
            },
            input_value: inputValue, want_value: wantValue ? 1 : 0,
            complete_value: { context, value in
                let unmanaged = Unmanaged<FunctionCaller>.fromOpaque(context!)
                let (release, onLoop, wakeup) = unmanaged._withUnsafeGuaranteedRef { caller in
                    (caller.releaseValue, pthread_equal(pthread_self(), caller.loopThread) != 0, caller.wakeup)
                }
                let output = LibraryOutput(data: nil, count: 0, release: nil, value: value, releaseValue: release)
                if onLoop {
                    unmanaged.takeRetainedValue().functionDone(.value, output)
                } else {
                    let bound = LoopBound(value: unmanaged)
                    wakeup.submit { bound.value.takeRetainedValue().functionDone(.value, output) }
                }
            })
        entry(&call)
        return true
    }
}

/// The completion of an exchange the library asked for: called exactly once, on the loop, with
/// the status (negative: failed, the body says why) and the body.
struct ExchangeDone {
    fileprivate let context: UnsafeMutableRawPointer?
    fileprivate let done: dyninka_exchange_done_fn

    func callAsFunction(status: Int32, body: UnsafeRawBufferPointer) {
        done(context, status, body.baseAddress?.assumingMemoryBound(to: UInt8.self), body.count)
    }
}

/// What the host lends the app library (ABI 2): a way to wake the loop for the library's queued
/// jobs, and HTTP exchanges on the loop. Made once and kept for the process's life.
final class LoopLender {
    let wake: () -> Void
    let exchange: (_ host: String, _ port: Int, _ request: UnsafeRawBufferPointer, _ timeout: Int, _ done: ExchangeDone) -> Void

    init(wake: @escaping () -> Void,
         exchange: @escaping (_ host: String, _ port: Int, _ request: UnsafeRawBufferPointer, _ timeout: Int, _ done: ExchangeDone) -> Void) {
        self.wake = wake
        self.exchange = exchange
    }
}

extension ServiceTable {
    /// Lends the loop to the library, when it takes one: its async services then run on the
    /// loop thread and fetch through `lender.exchange`. Returns false for a library without ABI 2.
    func lend(_ lender: LoopLender) -> Bool {
        guard let attachHost else { return false }
        let lent = UnsafeMutablePointer<dyninka_host>.allocate(capacity: 1)
        lent.initialize(to: dyninka_host(
            context: Unmanaged.passRetained(lender).toOpaque(),
            wake: { context in
                Unmanaged<LoopLender>.fromOpaque(context!).takeUnretainedValue().wake()
            },
            exchange: { context, name, port, request, length, timeout, exchangeContext, done in
                let lender = Unmanaged<LoopLender>.fromOpaque(context!).takeUnretainedValue()
                lender.exchange(String(cString: name!), Int(port), UnsafeRawBufferPointer(start: request, count: length),
                                Int(timeout), ExchangeDone(context: exchangeContext, done: done!))
            }))
        attachHost(lent)
        return true
    }
}
