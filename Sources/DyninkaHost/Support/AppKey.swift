import CDyninkaCrypto
import DyninkaHTTP
import DyninkaLoop
#if canImport(Glibc)
import Glibc
#endif

/// The app's key: hops inside the app prove with it that they are the app.
///
/// Every hop a host makes for the app carries `Dyninka-Auth: v1 EXPIRY MAC`, an HMAC-SHA256
/// (OpenSSL's libcrypto) over the service called, the route and arguments it is given and the
/// deadline passed on, valid until EXPIRY (Unix ms: the hop's deadline, or its response
/// timeout, from now). A host checks it before any work: a request that carries a valid one is
/// the app's; one without is a client's, which may only run main's chain at a public service
/// (the entry, or `--public`) or a route the operator allows (`--allow-route`); a wrong or
/// expired one is refused. A hop can only forward what it was given (the rest of its own route),
/// so what a client starts can never grow on the way; a captured hop replays only until EXPIRY.
final class AppKey {
    private let key: OpaquePointer
    /// Clocks of two nodes may differ by this much (ms) before an expiry counts as passed.
    static let clockSkew: UInt64 = 2_000

    /// A key of at least 16 bytes, given as hex (a key file's or DYNINKA_APP_KEY's text).
    init(hex text: String) throws(HostStartupError) {
        let digits = Array(text.utf8.filter { $0 != 10 && $0 != 13 && $0 != 32 })
        guard digits.count >= 32, digits.count % 2 == 0 else {
            throw HostStartupError("the app key must be at least 32 hex digits (16 bytes); `dyninka run` and `dyninka deploy` make one (got \(digits.count) characters)")
        }
        var bytes: [UInt8] = []
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(decoding: digits[i...i + 1], as: UTF8.self), radix: 16) else {
                throw HostStartupError("the app key must be hex digits only")
            }
            bytes.append(byte)
        }
        guard let key = bytes.withUnsafeBufferPointer({ dyn_app_key_new($0.baseAddress, $0.count) }) else {
            throw HostStartupError("libcrypto cannot make an HMAC-SHA256 context for the app key")
        }
        self.key = key
    }

    deinit { dyn_app_key_free(key) }

    /// The key from `--app-key-file` (or DYNINKA_APP_KEY_FILE) or DYNINKA_APP_KEY; nil without one.
    static func load(_ configuration: HostConfiguration) throws(HostStartupError) -> AppKey? {
        if let path = configuration.appKeyFile {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw HostStartupError("cannot read the app key file \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw HostStartupError("the app key file \(path) is empty") }
            return try AppKey(hex: String(decoding: buffer[..<n], as: UTF8.self))
        }
        return try configuration.appKey.map { text throws(HostStartupError) in try AppKey(hex: text) }
    }

    /// Unix milliseconds now (CLOCK_REALTIME: expiries are compared across hosts).
    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return UInt64(time.tv_sec) * 1000 + UInt64(time.tv_nsec) / 1_000_000
    }

    /// Appends `Dyninka-Auth: ...\r\n` for a hop to `target` with `deadline` (the digits of the
    /// Dyninka-Deadline line written, if any), valid for `validFor` ms. Nothing is allocated.
    func sign(_ target: HopTarget, deadline: UnsafeRawBufferPointer?, validFor milliseconds: Int, into head: ByteStore) {
        let expiry = Self.now() + UInt64(max(milliseconds, 0))
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(DYN_AUTH_VALUE_MAX)) { value in
            let length = target.signedParts { service, route, arguments in
                withPart(deadline) { deadline in dyn_auth_value(key, service, route, arguments, deadline, expiry, value.baseAddress) }
            }
            guard length > 0 else { return }
            head.append("Dyninka-Auth: ")
            head.append(UnsafeRawBufferPointer(start: value.baseAddress, count: length))
            head.append("\r\n")
        }
    }

    /// A `Dyninka-Auth` value over `parts` (what a control request names: what it asks for, and
    /// of whom), valid for `milliseconds`.
    func signControl(_ what: String, _ parts: String, validFor milliseconds: Int) -> String {
        let expiry = Self.now() + UInt64(max(milliseconds, 0))
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(DYN_AUTH_VALUE_MAX)) { value in
            let length = withPart(what) { service in
                withPart(parts) { route in dyn_auth_value(key, service, route, dyn_part(data: nil, length: 0), dyn_part(data: nil, length: 0), expiry, value.baseAddress) }
            }
            return String(decoding: UnsafeRawBufferPointer(start: value.baseAddress, count: length), as: UTF8.self)
        }
    }

    /// Whether `auth` signs `what` and `parts` with this key and has not expired.
    func checkControl(_ auth: String, _ what: String, _ parts: String) -> Verdict {
        var expiry: UInt64 = 0
        var auth = auth
        let valid = withPart(what) { service in
            withPart(parts) { route in
                auth.withUTF8 { bytes in
                    bytes.withMemoryRebound(to: CChar.self) {
                        dyn_auth_check(key, service, route, dyn_part(data: nil, length: 0), dyn_part(data: nil, length: 0), $0.baseAddress, $0.count, &expiry)
                    }
                }
            }
        }
        guard valid == 1 else { return .refused("its Dyninka-Auth is not this app's key over what it asks") }
        let now = Self.now()
        guard now <= expiry + Self.clockSkew else { return .refused("its Dyninka-Auth expired \(now - expiry) ms ago (a replayed request?)") }
        return .app
    }

    /// What a request's `Dyninka-Auth` says about it.
    enum Verdict {
        /// Signed with the app's key for what it carries, and not expired: a hop of the app.
        case app
        /// No Dyninka-Auth: a client.
        case client
        /// A Dyninka-Auth that does not fit: why.
        case refused(String)
    }

    /// Checks `head`, a request to `service` (its name's UTF-8), against its route, arguments and
    /// deadline as sent.
    func check(_ head: HTTPHead, service: [UInt8]) -> Verdict {
        guard let auth = head.valueBytes(of: "dyninka-auth") else { return .client }
        // Several Dyninka-Deadline lines are read (and signed) as one list, as the route check reads them.
        let deadline = head.has("dyninka-deadline") ? head.values(of: "dyninka-deadline").joined(separator: ",") : nil
        var expiry: UInt64 = 0
        let valid = withPart(Optional(service)) { service in
            withPart(head.valueBytes(of: "dyninka-route")) { route in
                withPart(head.valueBytes(of: "dyninka-args")) { arguments in
                    withPart(deadline) { deadline in
                        auth.withMemoryRebound(to: CChar.self) {
                            dyn_auth_check(key, service, route, arguments, deadline, $0.baseAddress, $0.count, &expiry)
                        }
                    }
                }
            }
        }
        guard valid == 1 else {
            return .refused("its Dyninka-Auth does not match the request: not signed with this app's key, or its route, arguments or deadline were changed on the way")
        }
        let now = Self.now()
        guard now <= expiry + Self.clockSkew else {
            return .refused("its Dyninka-Auth expired \(now - expiry) ms ago (a replayed request?)")
        }
        return .app
    }
}

/// What a hop of the app writes besides the target's head: the client's deadline (ms left), and
/// the signature when the host has a key.
struct AppHop {
    var deadline: Int?
    var key: AppKey?
}

/// Calls `body` with `bytes` as a part of the signed message (absent when nil).
func withPart<R>(_ bytes: UnsafeRawBufferPointer?, _ body: (dyn_part) -> R) -> R {
    guard let bytes else { return body(dyn_part(data: nil, length: 0)) }
    // An empty value is present: it needs a pointer all the same.
    if bytes.count == 0 { return withUnsafeBytes(of: 0) { body(dyn_part(data: $0.baseAddress!.assumingMemoryBound(to: UInt8.self), length: 0)) } }
    return body(dyn_part(data: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), length: bytes.count))
}

func withPart<R>(_ text: String?, _ body: (dyn_part) -> R) -> R {
    guard let text else { return body(dyn_part(data: nil, length: 0)) }
    var copy = text
    return copy.withUTF8 { withPart(UnsafeRawBufferPointer($0), body) }
}

func withPart<R>(_ bytes: [UInt8]?, _ body: (dyn_part) -> R) -> R {
    guard let bytes else { return body(dyn_part(data: nil, length: 0)) }
    return bytes.withUnsafeBytes { withPart(Optional($0), body) }
}
