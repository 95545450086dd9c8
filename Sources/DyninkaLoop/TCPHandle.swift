internal import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// What a read produced. The bytes are only valid during the callback, unless kept as
/// `loop.readBlock.own(bytes)`.
package enum ReadEvent {
    case data(UnsafeRawBufferPointer)
    case end
    case failed(LoopError)
}

/// What happened to a write.
package enum WriteStatus {
    /// The kernel took every byte before `write` returned; nothing more will be reported.
    case done
    /// Part is still queued; the delegate's `handleWriteDone` reports the end.
    case pending
    /// The write could not be started.
    case failed(LoopError)
}

/// Receives what a connection reports. Methods instead of closures: the hop path makes two
/// connections per request, and a closure context per callback is an allocation and a retain each.
package protocol TCPHandleDelegate: AnyObject {
    /// Bytes (valid only during the call), the peer's end, or a read failure.
    func handleRead(_ event: ReadEvent)
    /// A write that returned `.pending` finished (nil) or failed.
    func handleWriteDone(_ error: LoopError?)
}

extension TCPHandleDelegate {
    package func handleWriteDone(_ error: LoopError?) {}
}

/// A libuv TCP handle: a listening server or a connection.
///
/// The handle keeps itself alive from creation until its close callback has run, as libuv
/// requires; call `close()` exactly when done with it. It holds its delegate until then.
package final class TCPHandle {
    package let loop: EventLoop
    let raw: UnsafeMutablePointer<uv_tcp_t>
    private var delegate: (any TCPHandleDelegate)?
    /// The loop has watched the socket (reading, a queued write, listening or connecting): its
    /// close must go through libuv's epoll bookkeeping.
    private var watched = false
    private var onConnection: ((TCPHandle) -> Void)?
    private var onAcceptError: ((LoopError) -> Void)?
    private var onClose: (() -> Void)?
    package private(set) var isClosing = false

    package init(loop: EventLoop) throws(LoopError) {
        self.loop = loop
        raw = .allocate(capacity: 1)
        let result = uv_tcp_init(loop.raw, raw)
        if result < 0 {
            raw.deallocate()
            throw LoopError(code: result, operation: "uv_tcp_init")
        }
        raw.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    deinit { raw.deallocate() }

    static func from(_ pointer: UnsafeMutableRawPointer?) -> TCPHandle {
        Unmanaged<TCPHandle>.fromOpaque(pointer!).takeUnretainedValue()
    }

    /// Runs `body` on the handle stored in a libuv handle's data pointer, without a retain:
    /// the handle holds itself until its close callback.
    @inline(__always)
    static func with<R>(_ pointer: UnsafeMutableRawPointer?, _ body: (TCPHandle) -> R) -> R {
        Unmanaged<TCPHandle>.fromOpaque(pointer!)._withUnsafeGuaranteedRef(body)
    }

    // MARK: Server

    /// Binds and listens; `onConnection` receives each accepted connection, not yet reading.
    /// With `reusePort`, another process may bind the same port at the same time (the kernel
    /// spreads new connections over both): a replacement can start before the old one drains.
    /// With `freeBind` too, the address need not be the machine's yet (IP_FREEBIND): nothing
    /// arrives until it is. `onAcceptError` hears of a connection the kernel would not hand
    /// over (EMFILE: out of descriptors; libuv then closes it unanswered).
    package static func listen(loop: EventLoop, on address: SocketAddress, backlog: Int32 = 1024, reusePort: Bool = false,
                               freeBind: Bool = false, onAcceptError: ((LoopError) -> Void)? = nil,
                               onConnection: @escaping (TCPHandle) -> Void) throws(LoopError) -> TCPHandle {
        let server = try TCPHandle(loop: loop)
        var storage = address.storage
        do {
            if reusePort {
                let fd = dyn_reuseport_socket(Int32(storage.ss_family), freeBind ? 1 : 0)
                try uvCheck(fd < 0 ? UV_EINVAL.rawValue : 0, "socket with SO_REUSEPORT for \(address)")
                try uvCheck(uv_tcp_open(server.raw, fd), "uv_tcp_open")
            }
            try uvCheck(uv_tcp_bind(server.raw, dyn_sockaddr(&storage), 0), "bind \(address)")
            // Accepted sockets inherit TCP_NODELAY from the listener: one setsockopt, not one per connection.
            uv_tcp_nodelay(server.raw, 1)
            _ = dyn_tcp_defer_accept(server.raw)
            server.onConnection = onConnection
            server.onAcceptError = onAcceptError
            server.watched = true
            try uvCheck(uv_listen(dyn_tcp_stream(server.raw), backlog) { stream, status in
                let server = TCPHandle.from(stream!.pointee.data)
                if status < 0 { server.onAcceptError?(LoopError(code: status, operation: "accept")) }
                guard status >= 0, let callback = server.onConnection,
                      let client = try? TCPHandle(loop: server.loop) else { return }
                if uv_accept(stream, dyn_tcp_stream(client.raw)) == 0 {
                    callback(client)
                } else {
                    client.close()
                }
            }, "listen on \(address)")
            try uvCheck(dyn_tcp_accept_counted(server.raw), "accept counted connections on \(address)")
        } catch {
            server.close()
            throw error
        }
        return server
    }

    /// The accept calls the listeners of this thread's loop have made: one per connection they
    /// took (a listener asks its queue's length and accepts that many, never until an accept
    /// fails; see `dyn_server_io_counted`), plus one per accept the kernel refused.
    package static var acceptCallsOnThisThread: UInt { UInt(dyn_accept_calls()) }

    /// A listener: accepts every connection waiting in its queue now and hands each to the
    /// connection callback, as the loop would. Call it right before closing the listener: closing
    /// resets whatever is still queued, and those clients already sent their requests.
    @discardableResult
    package func acceptPending() -> Int {
        guard let callback = onConnection else { return 0 }
        var accepted = 0
        while true {
            let fd = dyn_accept_pending(raw)
            guard fd >= 0 else { return accepted }
            guard let client = try? TCPHandle(loop: loop) else {
                Glibc.close(fd)
                return accepted
            }
            if uv_tcp_open(client.raw, fd) == 0 {
                accepted += 1
                callback(client)
            } else {
                Glibc.close(fd)
                client.close()
            }
        }
    }

    /// The address the handle is bound to (with the port the kernel picked for port 0).
    package var localAddress: SocketAddress? {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutableBytes(of: &storage) {
            uv_tcp_getsockname(raw, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        return result == 0 ? SocketAddress(storage: storage) : nil
    }

    /// The address of the peer of a connection.
    package var remoteAddress: SocketAddress? {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutableBytes(of: &storage) {
            uv_tcp_getpeername(raw, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        return result == 0 ? SocketAddress(storage: storage) : nil
    }

    // MARK: Client

    /// Starts connecting to `address` and returns the handle at once, reading into `delegate`.
    /// Write the request right away: when the connection is not established yet, the write is
    /// queued until it is, and the handshake's last ACK goes with it (see
    /// `dyn_tcp_connect_start`). A refused or failed connection shows as a write or read failure
    /// (ECONNREFUSED, ETIMEDOUT, ...), never as a separate event. No TCP_NODELAY: a hop writes
    /// its whole request in one writev, so Nagle never waits.
    package static func connect(loop: EventLoop, to address: SocketAddress, delegate: any TCPHandleDelegate) throws(LoopError) -> TCPHandle {
        let handle = try TCPHandle(loop: loop)
        var storage = address.storage
        let fd = dyn_tcp_connect_start(&storage)
        do {
            try uvCheck(fd, "connect \(address)")
            let opened = uv_tcp_open(handle.raw, fd)
            if opened < 0 { Glibc.close(fd) }
            try uvCheck(opened, "uv_tcp_open")
        } catch {
            handle.close()
            throw error
        }
        handle.startReading(delegate)
        return handle
    }

    // MARK: Reading

    /// Starts delivering reads to `delegate` (held until the handle closes). The bytes of `.data`
    /// are valid only during the call.
    package func startReading(_ delegate: any TCPHandleDelegate) {
        guard !isClosing else { return }
        self.delegate = delegate
        watched = true
        let result = uv_read_start(dyn_tcp_stream(raw), { handle, _, buf in
            let loop = EventLoop.from(handle!.pointee.loop)
            buf!.pointee.base = loop.blockForRead().base.assumingMemoryBound(to: CChar.self)
            buf!.pointee.len = ReadBlock.size
        }, { stream, count, buf in
            TCPHandle.with(stream!.pointee.data) { handle in
                guard let delegate = handle.delegate else { return }
                if count > 0 {
                    // The bytes are in the loop's current read block (`loop.readBlock`).
                    delegate.handleRead(.data(UnsafeRawBufferPointer(start: buf!.pointee.base, count: count)))
                } else if count == Int(UV_EOF.rawValue) {
                    delegate.handleRead(.end)
                } else if count < 0 {
                    delegate.handleRead(.failed(LoopError(code: Int32(count), operation: "read")))
                }
            }
        })
        if result < 0 { delegate.handleRead(.failed(LoopError(code: result, operation: "uv_read_start"))) }
    }

    /// Reads what has already arrived, now, without waiting for the loop to report it (a
    /// listener with TCP_DEFER_ACCEPT hands over connections whose request is in). Delivers to
    /// the delegate like a read; does nothing when no byte is there yet.
    package func readAvailable(into delegate: any TCPHandleDelegate) {
        guard !isClosing else { return }
        self.delegate = delegate
        var fd: uv_os_fd_t = -1
        guard uv_fileno(dyn_tcp_handle(raw), &fd) == 0 else { return }
        let block = loop.blockForRead()
        let count = recv(fd, block.base, ReadBlock.size, Int32(MSG_DONTWAIT))
        if count > 0 {
            delegate.handleRead(.data(UnsafeRawBufferPointer(start: block.base, count: count)))
        } else if count == 0 {
            delegate.handleRead(.end)
        } else if errno != EAGAIN && errno != EWOULDBLOCK {
            delegate.handleRead(.failed(LoopError(code: -errno, operation: "read")))
        }
    }

    /// Stops delivering reads until `startReading` is called again.
    package func stopReading() {
        guard !isClosing else { return }
        uv_read_stop(dyn_tcp_stream(raw))
    }

    // MARK: Writing

    /// Writes `head` then `body`. When the kernel takes everything at once (the usual case for
    /// small messages) the result is `.done`. Otherwise the rest is queued and the delegate's
    /// `handleWriteDone` reports the end; `body`'s owner is kept until it does. The head is
    /// borrowed for this call only (a scratch buffer): what of it is not written at once is copied.
    ///
    /// `closing` promises a `close()` right after a `.done`, with every byte the peer sent read:
    /// the bytes then wait in the socket for the close, and its FIN leaves with them in one
    /// segment (`dyn_tcp_try_write_closing`). Without the close they would wait ~200 ms.
    package func write(_ head: UnsafeRawBufferPointer, _ body: OwnedBytes = .empty, closing: Bool = false) -> WriteStatus {
        guard !isClosing else { return .failed(LoopError(code: UV_ECANCELED.rawValue, operation: "write")) }
        let bodyBytes = body.bytes
        let total = head.count + bodyBytes.count
        guard total > 0 else { return .done }
        // One or two buffers: the head, then the body; an empty one is left out.
        var bufs = (Self.buf(head), Self.buf(bodyBytes))
        if head.count == 0 { bufs.0 = bufs.1 }
        let count: UInt32 = head.count > 0 && bodyBytes.count > 0 ? 2 : 1
        let written = withUnsafeMutableBytes(of: &bufs) {
            let bufs = $0.baseAddress!.assumingMemoryBound(to: uv_buf_t.self)
            return Int(closing ? dyn_tcp_try_write_closing(self.raw, bufs, count) : uv_try_write(dyn_tcp_stream(self.raw), bufs, count))
        }
        if written == total { return .done }
        if written < 0 && written != Int(UV_EAGAIN.rawValue) {
            return .failed(LoopError(code: Int32(written), operation: "write"))
        }
        // The rest goes through uv_write, which keeps the buffers until its callback.
        let request = WriteRequest(owner: body.owner, handle: self)
        let skip = max(written, 0)
        var remaining = count
        if skip < head.count {
            // The head is borrowed: what the kernel did not take of it is copied.
            let rest = UnsafeRawBufferPointer(rebasing: head[skip...])
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: rest.count, alignment: 1)
            copy.copyMemory(from: rest)
            request.headCopy = copy
            bufs.0 = Self.buf(UnsafeRawBufferPointer(copy))
        } else {
            bufs.0 = Self.buf(UnsafeRawBufferPointer(rebasing: bodyBytes[(skip - head.count)...]))
            remaining = 1
        }
        let raw = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
        raw.pointee.data = Unmanaged.passRetained(request).toOpaque()
        watched = true
        let result = withUnsafeMutableBytes(of: &bufs) {
            uv_write(raw, dyn_tcp_stream(self.raw), $0.baseAddress!.assumingMemoryBound(to: uv_buf_t.self), remaining) { raw, status in
                let request = Unmanaged<WriteRequest>.fromOpaque(raw!.pointee.data!).takeRetainedValue()
                raw!.deallocate()
                request.handle.delegate?.handleWriteDone(status < 0 ? LoopError(code: status, operation: "write") : nil)
            }
        }
        if result < 0 {
            Unmanaged<WriteRequest>.fromOpaque(raw.pointee.data!).release()
            raw.deallocate()
            return .failed(LoopError(code: result, operation: "write"))
        }
        return .pending
    }

    @inline(__always)
    private static func buf(_ bytes: UnsafeRawBufferPointer) -> uv_buf_t {
        uv_buf_init(UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(bytes.count))
    }

    private final class WriteRequest {
        let owner: AnyObject?
        let handle: TCPHandle
        var headCopy: UnsafeMutableRawBufferPointer?
        init(owner: AnyObject?, handle: TCPHandle) {
            self.owner = owner
            self.handle = handle
        }
        deinit { headCopy?.deallocate() }
    }

    // MARK: Closing

    /// Makes the next close send RST instead of FIN (no TIME_WAIT; used for hostile peers).
    package func setResetOnClose() {
        _ = dyn_tcp_set_linger_zero(raw)
    }

    /// Closes the handle; pending writes fail with ECANCELED. `onClose` runs once it is closed.
    package func close(_ onClose: (() -> Void)? = nil) {
        guard !isClosing else { return }
        isClosing = true
        self.onClose = onClose
        // A socket the loop never watched is closed here, sparing libuv's close an
        // epoll_ctl(DEL) that could only fail: a connection whose whole request came with it and
        // whose answer went out at once costs no epoll call at all.
        if !watched { _ = dyn_tcp_close_unwatched(raw) }
        uv_close(dyn_tcp_handle(raw)) { handle in
            let this = Unmanaged<TCPHandle>.fromOpaque(handle!.pointee.data!).takeRetainedValue()
            this.delegate = nil
            this.onConnection = nil
            let callback = this.onClose
            this.onClose = nil
            callback?()
        }
    }
}
