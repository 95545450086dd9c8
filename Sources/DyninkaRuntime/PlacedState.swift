import Foundation

/// Storage of a `@Placed` variable: one value behind a lock. Each read and each write is atomic;
/// a read-modify-write such as `count += 1` is two steps (as with any shared variable).
public final class PlacedState<Value>: @unchecked Sendable {
    // Every access to `stored` holds `lock`.
    private let lock = NSLock()
    private var stored: Value

    /// Storage holding `value` (the variable's initial value).
    public init(_ value: Value) { stored = value }

    /// The current value.
    public var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }

    /// Runs `body` with exclusive access, for read-modify-write updates.
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        try lock.withLock { try body(&stored) }
    }
}
