public import CDyninkaABI
import Foundation

/// A value passed between two stages of one process (fusion, ABI 4): the output of one service,
/// handed to the next as its receiver without being encoded. The host holds it as an opaque
/// pointer (+1) and passes it on or releases it through the table.
///
/// The glue's calls are specialized in the app's module (`@inlinable` below), so making and
/// opening a box costs an allocation and a pointer comparison, never a generic metadata lookup.
@usableFromInline
final class FusedValue<Value>: @unchecked Sendable {
    // Written once before it is handed over; read once by the next stage.
    @usableFromInline let value: Value
    @usableFromInline init(_ value: Value) { self.value = value }
}

/// The inputs of one call: the receiver's JSON (or the previous fused stage's value) and each
/// explicit argument's JSON.
public struct CallInputs {
    @usableFromInline let call: UnsafePointer<dyninka_call>
    /// The receiver as an earlier stage's value (fusion), taken over from the call.
    @usableFromInline let value: AnyObject?

    @usableFromInline
    init(call: UnsafePointer<dyninka_call>) {
        self.call = call
        value = call.pointee.input_value.map { Unmanaged<AnyObject>.fromOpaque($0).takeRetainedValue() }
    }

    /// The implicit input (the receiver): the previous fused stage's value as it is, or decoded.
    @inlinable
    public func input<T: Decodable>(_ type: T.Type) throws -> T {
        if let value {
            // The route's types were checked against the table, so the box is the receiver's type;
            // comparing the class is cheaper than a dynamic cast.
            guard ObjectIdentifier(Swift.type(of: value)) == ObjectIdentifier(FusedValue<T>.self) else {
                throw Self.wrongValue(value, expected: T.self)
            }
            return unsafeDowncast(value, to: FusedValue<T>.self).value
        }
        return try decodeInput(type)
    }

    @usableFromInline
    func decodeInput<T: Decodable>(_ type: T.Type) throws -> T {
        try Coding.decode(type, from: call.pointee.input, what: "input")
    }

    @usableFromInline
    static func wrongValue(_ value: AnyObject, expected: Any.Type) -> DecodingFailure {
        DecodingFailure(message: "input: the previous stage passed a \(Swift.type(of: value)), not a \(expected)")
    }

    /// Decodes explicit argument `index` (declaration order).
    public func argument<T: Decodable>(_ index: Int, _ type: T.Type, label: String) throws -> T {
        guard index < call.pointee.argument_count, let arguments = call.pointee.arguments else {
            throw DecodingFailure(message: "argument '\(label)' is missing")
        }
        return try Coding.decode(type, from: arguments[index], what: "argument '\(label)'")
    }
}

/// A decoding failure of the input or an argument; reported to the caller as `bad-input`.
public struct DecodingFailure: Error, CustomStringConvertible {
    /// What did not decode and why, naming the input or the argument.
    public var message: String
    /// The message.
    public var description: String { message }
}

/// Runs service functions for the C entry points of a generated table.
public enum ServiceCall {
    /// Runs a synchronous service: decode, call, encode, complete; all before returning.
    /// Inlined into the app's glue, so that it is specialized for the service's types.
    @inlinable
    public static func run<Output: Encodable>(_ call: UnsafePointer<dyninka_call>?,
                                              _ body: (CallInputs) throws -> Output?) {
        guard let call else { return }
        let inputs = CallInputs(call: call)
        let result: Output?
        do {
            result = try body(inputs)
        } catch {
            return fail(call.pointee, error)
        }
        guard let output = result else { return finish(call.pointee, Output?.none) }
        // Fusion: the next stage runs in this process and takes the value as it is.
        if call.pointee.want_value != 0, let completeValue = call.pointee.complete_value {
            return completeValue(call.pointee.context, Unmanaged.passRetained(FusedValue(output) as AnyObject).toOpaque())
        }
        finish(call.pointee, output)
    }

    /// Runs an async service: inputs are decoded now, on the host's loop (they are only valid
    /// until completion). The function runs as a task on the host's loop when the host lends it
    /// (ABI 2), otherwise on Swift's concurrency pool, completing from there.
    public static func runAsync<Inputs: Sendable, Output: Encodable & Sendable>(
        _ call: UnsafePointer<dyninka_call>?,
        decode: (CallInputs) throws -> Inputs,
        _ body: @escaping @Sendable (Inputs) async throws -> Output?
    ) {
        guard let call else { return }
        let inputs: Inputs
        do {
            inputs = try decode(CallInputs(call: call))
        } catch let failure as DecodingFailure {
            return complete(call.pointee, DYNINKA_STATUS_BAD_INPUT, message: failure.message)
        } catch {
            return complete(call.pointee, DYNINKA_STATUS_BAD_INPUT, message: describe(error))
        }
        let completion = Completion(call.pointee)
        @Sendable func run() async {
            do {
                let output = try await body(inputs)
                completion.finish(output)
            } catch {
                completion.fail(describe(error))
            }
        }
        // Under a host that lends its loop, the task runs there: it starts before `entry`
        // returns and runs until it first waits (for example on a Fetch, also on the loop).
        guard let loop = HostLoop.current else {
            Task { await run() }
            return
        }
        loop.inCallback {
            Task(executorPreference: loop) { await run() }
        }
    }

    @usableFromInline
    static func finish<Output: Encodable>(_ call: dyninka_call, _ output: Output?) {
        Completion(call).finish(output)
    }

    /// A thrown error: bad input when decoding failed, a function error otherwise.
    @usableFromInline
    static func fail(_ call: dyninka_call, _ error: Error) {
        if let failure = error as? DecodingFailure {
            return complete(call, DYNINKA_STATUS_BAD_INPUT, message: failure.message)
        }
        complete(call, DYNINKA_STATUS_FUNCTION_ERROR, message: describe(error))
    }

    static func complete(_ call: dyninka_call, _ status: dyninka_status, message: String) {
        Completion(call).send(status, message: message)
    }

    static func describe(_ error: Error) -> String {
        if let decoding = error as? DecodingError { return Coding.describe(decoding) }
        let text = String(describing: error)
        return text.isEmpty ? "\(type(of: error))" : text
    }
}

/// The host's completion callback for one call; safe to move to another thread.
struct Completion: @unchecked Sendable {
    // The host promises the callbacks may be called once (one of them) from any thread.
    let context: UnsafeMutableRawPointer?
    let complete: dyninka_complete_fn?
    /// Set when the next stage runs in this process: a value goes to it unencoded (ABI 4).
    let completeValue: dyninka_complete_value_fn?

    init(_ call: dyninka_call) {
        context = call.context
        complete = call.complete
        completeValue = call.want_value != 0 ? call.complete_value : nil
    }

    func finish<Output: Encodable>(_ output: Output?) {
        guard let output else {
            complete?(context, Int32(DYNINKA_STATUS_NIL.rawValue), nil, 0)
            return
        }
        if let completeValue {
            return completeValue(context, Unmanaged.passRetained(FusedValue(output) as AnyObject).toOpaque())
        }
        do {
            let (bytes, count) = try Coding.encode(output)
            complete?(context, Int32(DYNINKA_STATUS_OK.rawValue), bytes, count)
        } catch {
            send(DYNINKA_STATUS_FUNCTION_ERROR, message: "output did not encode: \(error)")
        }
    }

    func fail(_ message: String) { send(DYNINKA_STATUS_FUNCTION_ERROR, message: message) }

    func send(_ status: dyninka_status, message: String) {
        let (bytes, count) = Coding.copy(Array(message.utf8))
        complete?(context, Int32(status.rawValue), bytes, count)
    }
}
