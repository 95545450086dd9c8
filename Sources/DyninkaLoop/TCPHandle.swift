import CLibUV

/// What a read produced. The bytes are only valid during the callback.
package enum ReadEvent {
    case data(UnsafeRawBufferPointer)
    case end
    case failed(LoopError)
}

/// A libuv TCP handle: a listening server or a connection.
///
/// The handle keeps itself alive from creation until its close callback has run, as libuv
/// requires; call `close()` exactly when done with it.
package final class TCPHandle {
    package let loop: EventLoop
    let raw: UnsafeMutablePointer<uv_tcp_t>
    private var onRead: ((ReadEvent) -> Void)?
    private var onConnection: ((TCPHandle) -> Void)?
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

    // MARK: Server

    /// Binds and listens; `onConnection` receives each accepted connection, not yet reading.
    /// With `reusePort`, another process may bind the same port at the same time (the kernel
    /// spreads new connections over both): a replacement can start before the old one drains.
    package static func listen(loop: EventLoop, on address: SocketAddress, backlog: Int32 = 1024, reusePort: Bool = false,
                               onConnection: @escaping (TCPHandle) -> Void) throws(LoopError) -> TCPHandle {
        let server = try TCPHandle(loop: loop)
        var storage = address.storage
        do {
            if reusePort {
                let fd = dyn_reuseport_socket(Int32(storage.ss_family))
                try uvCheck(fd < 0 ? UV_EINVAL.rawValue : 0, "socket with SO_REUSEPORT for \(address)")
                try uvCheck(uv_tcp_open(server.raw, fd), "uv_tcp_open")
            }
            try uvCheck(uv_tcp_bind(server.raw, dyn_sockaddr(&storage), 0), "bind \(address)")
            // Accepted sockets inherit TCP_NODELAY from the listener: one setsockopt, not one per connection.
            uv_tcp_nodelay(server.raw, 1)
            _ = dyn_tcp_defer_accept(server.raw)
            server.onConnection = onConnection
            try uvCheck(uv_listen(dyn_tcp_stream(server.raw), backlog) { stream, status in
                let server = TCPHandle.from(stream!.pointee.data)
                guard status >= 0, let callback = server.onConnection,
                      let client = try? TCPHandle(loop: server.loop) else { return }
                if uv_accept(stream, dyn_tcp_stream(client.raw)) == 0 {
                    callback(client)
                } else {
                    client.close()
                }
            }, "listen on \(address)")
        } catch {
            server.close()
            throw error
        }
        return server
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

    /// Connects to `address`; the completion runs on the loop with the connection or the error.
    package static func connect(loop: EventLoop, to address: SocketAddress,
                                completion: @escaping (Result<TCPHandle, LoopError>) -> Void) {
        let handle: TCPHandle
        do { handle = try TCPHandle(loop: loop) } catch { return completion(.failure(error)) }
        let request = ConnectRequest(handle: handle, address: address, completion: completion)
        let raw = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        raw.pointee.data = Unmanaged.passRetained(request).toOpaque()
        var storage = address.storage
        let result = uv_tcp_connect(raw, handle.raw, dyn_sockaddr(&storage)) { raw, status in
            let request = Unmanaged<ConnectRequest>.fromOpaque(raw!.pointee.data!).takeRetainedValue()
            raw!.deallocate()
            if status < 0 {
                request.handle.close()
                request.completion(.failure(LoopError(code: status, operation: "connect \(request.address)")))
            } else {
                // No TCP_NODELAY: a hop writes its whole request in one writev, so Nagle never waits.
                request.completion(.success(request.handle))
            }
        }
        if result < 0 {
            Unmanaged<ConnectRequest>.fromOpaque(raw.pointee.data!).release()
            raw.deallocate()
            handle.close()
            completion(.failure(LoopError(code: result, operation: "connect \(address)")))
        }
    }

    private final class ConnectRequest {
        let handle: TCPHandle
        let address: SocketAddress
        let completion: (Result<TCPHandle, LoopError>) -> Void
        init(handle: TCPHandle, address: SocketAddress, completion: @escaping (Result<TCPHandle, LoopError>) -> Void) {
            self.handle = handle
            self.address = address
            self.completion = completion
        }
    }

    // MARK: Reading

    /// Starts delivering reads. The bytes of `.data` are valid only during the callback.
    package func startReading(_ callback: @escaping (ReadEvent) -> Void) {
        guard !isClosing else { return }
        onRead = callback
        let result = uv_read_start(dyn_tcp_stream(raw), { handle, _, buf in
            let loop = EventLoop.from(handle!.pointee.loop)
            buf!.pointee.base = loop.readBuffer.assumingMemoryBound(to: CChar.self)
            buf!.pointee.len = EventLoop.readBufferSize
        }, { stream, count, _ in
            let handle = TCPHandle.from(stream!.pointee.data)
            guard let callback = handle.onRead else { return }
            if count > 0 {
                callback(.data(UnsafeRawBufferPointer(start: handle.loop.readBuffer, count: count)))
            } else if count == Int(UV_EOF.rawValue) {
                callback(.end)
            } else if count < 0 {
                callback(.failed(LoopError(code: Int32(count), operation: "read")))
            }
        })
        if result < 0 { callback(.failed(LoopError(code: result, operation: "uv_read_start"))) }
    }

    /// Stops delivering reads until `startReading` is called again.
    package func stopReading() {
        guard !isClosing else { return }
        uv_read_stop(dyn_tcp_stream(raw))
    }

    // MARK: Writing

    /// Writes `head` then `body`. The owners are kept alive until the bytes are no longer
    /// needed. The completion runs on the loop; when the kernel takes everything at once (the
    /// usual case for small messages) it runs before `write` returns.
    package func write(_ head: UnsafeRawBufferPointer, _ body: UnsafeRawBufferPointer,
                       owners: (AnyObject?, AnyObject?), completion: ((LoopError?) -> Void)? = nil) {
        guard !isClosing else {
            completion?(LoopError(code: UV_ECANCELED.rawValue, operation: "write"))
            return
        }
        var bufs = (uv_buf_init(UnsafeMutablePointer(mutating: head.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(head.count)),
                    uv_buf_init(UnsafeMutablePointer(mutating: body.baseAddress?.assumingMemoryBound(to: CChar.self)), UInt32(body.count)))
        let count: UInt32 = body.count > 0 ? 2 : 1
        let total = head.count + body.count
        let written = withUnsafeMutableBytes(of: &bufs) {
            Int(uv_try_write(dyn_tcp_stream(self.raw), $0.baseAddress!.assumingMemoryBound(to: uv_buf_t.self), count))
        }
        if written == total {
            completion?(nil)
            return
        }
        // The rest goes through uv_write, which keeps the buffers until its callback.
        var skip = max(written, 0)
        if skip >= head.count {
            skip -= head.count
            bufs.0 = uv_buf_init(bufs.1.base.advanced(by: skip), UInt32(body.count - skip))
            bufs.1 = uv_buf_init(nil, 0)
        } else {
            bufs.0 = uv_buf_init(bufs.0.base.advanced(by: skip), UInt32(head.count - skip))
        }
        let remaining: UInt32 = bufs.1.len > 0 ? 2 : 1
        let request = WriteRequest(owners: owners, completion: completion, handle: self)
        let raw = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
        raw.pointee.data = Unmanaged.passRetained(request).toOpaque()
        let result = withUnsafeMutableBytes(of: &bufs) {
            uv_write(raw, dyn_tcp_stream(self.raw), $0.baseAddress!.assumingMemoryBound(to: uv_buf_t.self), remaining) { raw, status in
                let request = Unmanaged<WriteRequest>.fromOpaque(raw!.pointee.data!).takeRetainedValue()
                raw!.deallocate()
                request.completion?(status < 0 ? LoopError(code: status, operation: "write") : nil)
            }
        }
        if result < 0 {
            Unmanaged<WriteRequest>.fromOpaque(raw.pointee.data!).release()
            raw.deallocate()
            completion?(LoopError(code: result, operation: "write"))
        }
    }

    private final class WriteRequest {
        let owners: (AnyObject?, AnyObject?)
        let completion: ((LoopError?) -> Void)?
        let handle: TCPHandle
        init(owners: (AnyObject?, AnyObject?), completion: ((LoopError?) -> Void)?, handle: TCPHandle) {
            self.owners = owners
            self.completion = completion
            self.handle = handle
        }
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
        uv_close(dyn_tcp_handle(raw)) { handle in
            let this = Unmanaged<TCPHandle>.fromOpaque(handle!.pointee.data!).takeRetainedValue()
            this.onRead = nil
            this.onConnection = nil
            let callback = this.onClose
            this.onClose = nil
            callback?()
        }
    }
}
