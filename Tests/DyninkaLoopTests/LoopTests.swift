#if canImport(Glibc)
import Glibc
#endif
import DyninkaLoop
import Testing

/// Collects what a connection reports.
final class Recorder: TCPHandleDelegate {
    var received: [UInt8] = []
    var ended = false
    var failure: LoopError?
    var onData: ((Recorder) -> Void)?

    func handleRead(_ event: ReadEvent) {
        switch event {
        case .data(let bytes):
            received += bytes
            onData?(self)
        case .end: ended = true
        case .failed(let error): failure = error
        }
    }
}

/// The loop layer alone: every handle made on a loop is gone once closed, and the objects behind
/// them are freed.
@Suite struct LoopTests {
    /// Runs the loop until `done` or 2 s have passed.
    func run(_ loop: EventLoop, until done: () -> Bool) {
        let deadline = EventLoop.nanoseconds() + 2_000_000_000
        while !done() && EventLoop.nanoseconds() < deadline { loop.runOnce() }
    }

    @Test func aConnectionAndItsServerLeaveNoHandleBehind() throws {
        let loop = try EventLoop()
        weak var weakServer: TCPHandle?
        weak var weakClient: TCPHandle?
        weak var weakAccepted: TCPHandle?
        let serverSide = Recorder()
        let clientSide = Recorder()
        do {
            var accepted: TCPHandle?
            let server = try TCPHandle.listen(loop: loop, on: try SocketAddress(ip: "127.0.0.1", port: 0)) { handle in
                accepted = handle
                handle.startReading(serverSide)
            }
            weakServer = server
            let port = try #require(server.localAddress?.port)
            let client = try TCPHandle.connect(loop: loop, to: try SocketAddress(ip: "127.0.0.1", port: port), delegate: clientSide)
            weakClient = client
            let message = Array("ping".utf8)
            _ = message.withUnsafeBytes { client.write($0) }
            run(loop) { serverSide.received.count == 4 }
            #expect(serverSide.received == message)
            let answer = Array("pong".utf8)
            _ = answer.withUnsafeBytes { accepted!.write($0) }
            run(loop) { clientSide.received.count == 4 }
            #expect(clientSide.received == answer)
            weakAccepted = accepted
            client.close()
            run(loop) { serverSide.ended }
            #expect(serverSide.ended, "the server side sees the client's close")
            accepted!.close()
            server.close()
            accepted = nil
        }
        run(loop) { loop.handleCount == 0 }
        #expect(loop.handleCount == 0)
        #expect(weakServer == nil && weakClient == nil && weakAccepted == nil, "handles are freed after their close callback")
        loop.close()
    }

    /// 127.0.0.1:`port` as a socket address (port 0: the kernel picks one at bind).
    func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    /// A blocking client socket connected to 127.0.0.1:`port` that has sent "ping".
    func pinging(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0, "connect: \(String(cString: strerror(errno)))")
        #expect(send(fd, "ping", 4, 0) == 4)
        return fd
    }

    /// Closes the clients' sockets, the connections taken and the listener, then checks that the
    /// loop is left with no handle and closes it.
    func closeAll(_ loop: EventLoop, clients: [Int32], handles: [TCPHandle], server: TCPHandle) {
        for fd in clients { close(fd) }
        for handle in handles { handle.close() }
        server.close()
        run(loop) { loop.handleCount == 0 }
        #expect(loop.handleCount == 0)
        loop.close()
    }

    /// What a host handing over does before closing its listener: connections waiting in the
    /// accept queue are taken, not reset by the close.
    @Test func aListenerTakesWhatWaitsInItsAcceptQueue() throws {
        let loop = try EventLoop()
        var taken: [TCPHandle] = []
        let server = try TCPHandle.listen(loop: loop, on: try SocketAddress(ip: "127.0.0.1", port: 0)) { taken.append($0) }
        let port = try #require(server.localAddress?.port)
        // Two clients connect and send (TCP_DEFER_ACCEPT queues a connection once bytes came);
        // the loop never runs, so both wait in the queue.
        var clients: [Int32] = []
        for _ in 0..<2 { clients.append(try pinging(port)) }
        // Both are in the queue within a moment (loopback), and nothing else is.
        var count = 0
        for _ in 0..<100 where count < 2 {
            usleep(2_000)
            count += server.acceptPending()
        }
        #expect(count == 2 && taken.count == 2, "took \(count), callback saw \(taken.count)")
        #expect(server.acceptPending() == 0)
        let recorder = Recorder()
        for handle in taken { handle.startReading(recorder) }
        run(loop) { recorder.received.count == 8 }
        #expect(recorder.received == Array("pingping".utf8), "the connections taken read their bytes")
        closeAll(loop, clients: clients, handles: taken, server: server)
    }

    /// A listener accepts what its queue holds and never calls accept once more to find the
    /// queue empty (that failing call costs ~3 us of kernel work per connection). Connections
    /// that queue up while the loop is busy are all taken.
    @Test func aListenerAcceptsOnceForEachConnection() throws {
        let loop = try EventLoop()
        var taken: [TCPHandle] = []
        let server = try TCPHandle.listen(loop: loop, on: try SocketAddress(ip: "127.0.0.1", port: 0)) { taken.append($0) }
        let port = try #require(server.localAddress?.port)
        let before = TCPHandle.acceptCallsOnThisThread
        var clients = [try pinging(port)]
        run(loop) { taken.count == 1 }
        for _ in 0..<20 { _ = loop.runOnce() }
        #expect(taken.count == 1)
        #expect(TCPHandle.acceptCallsOnThisThread - before == 1, "one accept call for one connection")
        // Five more queue up while the loop does not run.
        for _ in 0..<5 { clients.append(try pinging(port)) }
        run(loop) { taken.count == 6 }
        for _ in 0..<20 { _ = loop.runOnce() }
        #expect(taken.count == 6, "every queued connection is taken")
        #expect(TCPHandle.acceptCallsOnThisThread - before == 6, "one accept call for each connection, none more")
        closeAll(loop, clients: clients, handles: taken, server: server)
    }

    /// A connection the loop never watched (read at once, answered at once) still closes its
    /// socket, though libuv's close skips epoll for it: the client sees the answer, then the end.
    @Test func aConnectionNeverWatchedClosesItsSocket() throws {
        let loop = try EventLoop()
        let (server, handle, fd) = try takePing(loop)
        defer { close(fd) }
        let status = Array("pong".utf8).withUnsafeBytes { handle.write($0) }
        guard case .done = status else { Issue.record("the write did not complete at once: \(status)"); return }
        handle.close()
        server.close()
        run(loop) { loop.handleCount == 0 }
        #expect(loop.handleCount == 0)
        expectPongThenEnd(fd)
        loop.close()
    }

    /// A listener on a free port and the connection it took from a client that sent "ping",
    /// read at once (never watched by the loop); the client's socket is the caller's to close.
    func takePing(_ loop: EventLoop) throws -> (server: TCPHandle, handle: TCPHandle, client: Int32) {
        var taken: TCPHandle?
        let server = try TCPHandle.listen(loop: loop, on: try SocketAddress(ip: "127.0.0.1", port: 0)) { taken = $0 }
        let port = try #require(server.localAddress?.port)
        let fd = try pinging(port)
        run(loop) { taken != nil }
        let handle = try #require(taken)
        let recorder = Recorder()
        handle.readAvailable(into: recorder)
        #expect(recorder.received == Array("ping".utf8))
        return (server, handle, fd)
    }

    /// The client reads "pong", then the end of the connection (within 2 s).
    func expectPongThenEnd(_ fd: Int32) {
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = recv(fd, &buffer, 16, 0)
        #expect(n == 4 && Array(buffer[0..<4]) == Array("pong".utf8))
        #expect(recv(fd, &buffer, 16, 0) == 0, "the server's socket is closed: the client reads the end")
    }

    @Test func timersAndWakeupsAreGoneOnceClosed() throws {
        let loop = try EventLoop()
        let timer = try LoopTimer(loop: loop)
        var fired = 0
        timer.start(after: 1, repeat: 1) { fired += 1 }
        let wakeup = try LoopWakeup(loop: loop)
        run(loop) { fired >= 3 }
        #expect(fired >= 3)
        #expect(loop.handleCount >= 2)
        timer.close()
        wakeup.close()
        run(loop) { loop.handleCount == 0 }
        #expect(loop.handleCount == 0)
        loop.close()
    }

    @Test func aRefusedConnectionIsReportedAndFreed() throws {
        let loop = try EventLoop()
        // A port nobody listens on: bind one, note it, close it.
        let probe = try TCPHandle.listen(loop: loop, on: try SocketAddress(ip: "127.0.0.1", port: 0)) { _ in }
        let port = try #require(probe.localAddress?.port)
        probe.close()
        run(loop) { loop.handleCount == 0 }
        let recorder = Recorder()
        weak var weakClient: TCPHandle?
        do {
            let client = try TCPHandle.connect(loop: loop, to: try SocketAddress(ip: "127.0.0.1", port: port), delegate: recorder)
            weakClient = client
            let bytes = Array("x".utf8)
            let status = bytes.withUnsafeBytes { client.write($0) }
            if case .failed(let error) = status { recorder.failure = error }
            run(loop) { recorder.failure != nil }
            #expect(recorder.failure?.isConnectionRefused == true, "\(String(describing: recorder.failure))")
            client.close()
        }
        run(loop) { loop.handleCount == 0 }
        #expect(loop.handleCount == 0)
        #expect(weakClient == nil)
        loop.close()
    }

    /// Segments a socket sent and received so far (`tcpi_segs_out`, `tcpi_segs_in` of Linux's
    /// `struct tcp_info`, at bytes 136 and 140 since Linux 4.2; glibc's header predates them).
    func segments(_ fd: Int32) throws -> (sent: UInt32, received: UInt32) {
        var info = [UInt8](repeating: 0, count: 256)
        var length = socklen_t(info.count)
        try #require(getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &length) == 0 && length >= 144)
        return info.withUnsafeBytes { ($0.load(fromByteOffset: 136, as: UInt32.self), $0.load(fromByteOffset: 140, as: UInt32.self)) }
    }

    /// A write marked `closing` waits in the socket for the close, and the FIN leaves with it:
    /// the client receives SYN-ACK, the ACK of its request, and the answer with the FIN (three
    /// segments, not four), and sends no ACK of the answer of its own.
    @Test func aClosingWriteSendsItsBytesWithTheFIN() throws {
        let loop = try EventLoop()
        let (server, handle, fd) = try takePing(loop)
        defer { close(fd) }
        let status = Array("pong".utf8).withUnsafeBytes { handle.write($0, .empty, closing: true) }
        guard case .done = status else { Issue.record("the write did not complete at once: \(status)"); return }
        handle.close()
        server.close()
        run(loop) { loop.handleCount == 0 }
        expectPongThenEnd(fd)
        let counted = try segments(fd)
        #expect(counted.received == 3, "SYN-ACK, ACK, answer+FIN; received \(counted.received)")
        #expect(counted.sent == 3, "SYN, ACK, request; sent \(counted.sent)")
        loop.close()
    }

    /// A connection's request carries the handshake's last ACK: the server's socket receives
    /// two segments (SYN, then ACK with the request), not three.
    @Test func aConnectionsRequestCarriesTheHandshakesLastAck() throws {
        let loop = try EventLoop()
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                try #require(bind(listener, $0, length) == 0 && listen(listener, 4) == 0)
                try #require(getsockname(listener, $0, &length) == 0)
            }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let recorder = Recorder()
        let client = try TCPHandle.connect(loop: loop, to: try SocketAddress(ip: "127.0.0.1", port: port), delegate: recorder)
        let request = Array("ping".utf8)
        // On loopback the handshake completes inside connect: the write goes out at once.
        let status = request.withUnsafeBytes { client.write($0) }
        guard case .done = status else { Issue.record("the write did not complete at once: \(status)"); return }
        let accepted = accept(listener, nil, nil)
        try #require(accepted >= 0)
        defer { close(accepted) }
        var buffer = [UInt8](repeating: 0, count: 16)
        #expect(recv(accepted, &buffer, 16, 0) == 4 && Array(buffer[0..<4]) == request)
        let counted = try segments(accepted)
        #expect(counted.received == 2, "SYN, then ACK with the request; received \(counted.received)")
        client.close()
        run(loop) { loop.handleCount == 0 }
        #expect(loop.handleCount == 0)
        loop.close()
    }
}
