internal import CLibUV

/// An error reported by the event loop layer, carrying libuv's error code and the operation.
package struct LoopError: Error, CustomStringConvertible, Sendable {
    /// The negative libuv error code (for example UV_ECONNREFUSED).
    package let code: Int32
    /// What was being done, for example "connect 127.0.0.1:8081".
    package let operation: String

    package init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    /// The symbolic error name, for example "ECONNREFUSED".
    package var name: String { String(cString: uv_err_name(code)) }
    /// The human-readable reason, for example "connection refused".
    package var reason: String { String(cString: uv_strerror(code)) }
    package var description: String { "\(operation): \(reason) (\(name))" }

    package var isConnectionRefused: Bool { code == UV_ECONNREFUSED.rawValue }
    package var isConnectionReset: Bool { code == UV_ECONNRESET.rawValue }
    /// A write cancelled because its handle was closed (by its owner, who knows why).
    package var isCanceled: Bool { code == UV_ECANCELED.rawValue }
    package var isTimedOut: Bool { code == UV_ETIMEDOUT.rawValue }
    package var isEndOfFile: Bool { code == UV_EOF.rawValue }
    package var isAddressInUse: Bool { code == UV_EADDRINUSE.rawValue }
    package var isAddressNotAvailable: Bool { code == UV_EADDRNOTAVAIL.rawValue }

    package static let timedOut = LoopError(code: UV_ETIMEDOUT.rawValue, operation: "timer")
}

/// Turns a libuv return code into a thrown LoopError; the only place that does so.
@inline(__always)
func uvCheck(_ result: Int32, _ operation: @autoclosure () -> String) throws(LoopError) {
    if result < 0 { throw LoopError(code: result, operation: operation()) }
}
