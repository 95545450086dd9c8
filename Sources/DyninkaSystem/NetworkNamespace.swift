import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Sockets in a named network namespace (`ip netns add NAME`), opened without a child process:
/// the calling thread joins the namespace, opens the socket, and goes back. A socket stays in the
/// namespace it was opened in.
package enum NetworkNamespace {
    /// glibc's setns(2); Glibc's module map leaves it out (it is behind _GNU_SOURCE).
    private typealias SetNS = @convention(c) (Int32, Int32) -> Int32
    private static let cloneNewNet: Int32 = 0x4000_0000  // CLONE_NEWNET
    private static func setns(_ fd: Int32, _ type: Int32) -> Int32 {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else { errno = ENOSYS; return -1 }
        return unsafeBitCast(symbol, to: SetNS.self)(fd, type)
    }

    /// Why a namespace could not be entered.
    package struct Failure: Error, CustomStringConvertible, Sendable { package var description: String }

    /// A new socket (AF_INET, `type`) in namespace `name`, or in the current one when nil.
    package static func socket(in name: String?, type: Int32) throws(Failure) -> Int32 {
        guard let name else {
            let fd = Glibc.socket(AF_INET, type, 0)
            guard fd >= 0 else { throw Failure(description: "socket() failed: \(String(cString: strerror(errno)))") }
            return fd
        }
        let original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard original >= 0 else { throw Failure(description: "cannot open this thread's network namespace") }
        defer { close(original) }
        let target = open("/var/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
        guard target >= 0 else { throw Failure(description: "no network namespace '\(name)' (is the test bed up?)") }
        defer { close(target) }
        guard setns(target, cloneNewNet) == 0 else {
            throw Failure(description: "cannot enter network namespace '\(name)': \(String(cString: strerror(errno))) (root is needed)")
        }
        let fd = Glibc.socket(AF_INET, type, 0)
        let saved = errno
        // Back to where the thread was, whatever happened.
        guard setns(original, cloneNewNet) == 0 else { fatalError("cannot return to the original network namespace") }
        guard fd >= 0 else { throw Failure(description: "socket() in '\(name)' failed: \(String(cString: strerror(saved)))") }
        return fd
    }
}
