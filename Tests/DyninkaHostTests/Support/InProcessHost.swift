import DyninkaLoop
import Foundation
@testable import DyninkaHost

/// An in-memory client connection: the test delivers bytes as reads, the host's writes are
/// collected. Writes can be held (reported pending) to play a client that does not read.
final class MemoryStream: ByteStream {
    private let loop: EventLoop
    private var delegate: (any TCPHandleDelegate)?
    /// Everything the host wrote, in order.
    private(set) var written: [UInt8] = []
    private(set) var reading = false
    private(set) var closed = false
    private(set) var reset = false
    /// While true, writes are taken but reported pending until `completeWrites()`.
    var holdWrites = false
    /// Owners of the bodies of pending writes, kept alive as the kernel would.
    private var pending: [AnyObject?] = []
    /// Bytes delivered while the host was not reading; they arrive once it reads again.
    private var waiting: [UInt8] = []

    init(loop: EventLoop) { self.loop = loop }

    /// Delivers `bytes` as reads (at most a read block each), or keeps them until the host reads.
    func deliver(_ bytes: [UInt8]) {
        waiting += bytes
        flush()
    }

    func deliver(_ text: String) { deliver(Array(text.utf8)) }

    /// The client closed its sending side.
    func deliverEnd() { delegate?.handleRead(.end) }

    private func flush() {
        while reading, !closed, !waiting.isEmpty, let delegate {
            let count = min(waiting.count, ReadBlock.size)
            // Into the loop's read block, as a socket read would put them.
            let block = loop.blockForRead()
            waiting.withUnsafeBytes { block.base.copyMemory(from: $0.baseAddress!, byteCount: count) }
            waiting.removeFirst(count)
            delegate.handleRead(.data(UnsafeRawBufferPointer(start: block.base, count: count)))
        }
    }

    /// Finishes every held write.
    func completeWrites() {
        let count = pending.count
        pending.removeAll()
        for _ in 0..<count { delegate?.handleWriteDone(nil) }
    }

    func startReading(_ delegate: any TCPHandleDelegate) {
        if closePromised { brokenPromises.append("read after a closing write") }
        self.delegate = delegate
        reading = true
        flush()
    }

    func readAvailable(into delegate: any TCPHandleDelegate) {
        self.delegate = delegate
        let wasReading = reading
        reading = true
        flush()
        reading = wasReading
    }
    func stopReading() { reading = false }

    /// Writes made with `closing` (the host promised to close right after them).
    private(set) var closingWrites = 0
    /// A `closing` write completed and the stream is not closed yet: on a socket, its bytes
    /// would wait for the close.
    private(set) var closePromised = false
    /// What the host did between a completed `closing` write and its close (it must do nothing).
    private(set) var brokenPromises: [String] = []

    func write(_ head: UnsafeRawBufferPointer, _ body: OwnedBytes, closing: Bool) -> WriteStatus {
        guard !closed else { return .failed(LoopError(code: -125, operation: "write")) }
        if closePromised { brokenPromises.append("wrote after a closing write") }
        written += head
        written += body.bytes
        if closing { closingWrites += 1 }
        guard holdWrites else {
            closePromised = closing
            return .done
        }
        pending.append(body.owner)
        return .pending
    }

    func setResetOnClose() {
        // A reset drops what a closing write left waiting in the socket.
        if closePromised { brokenPromises.append("reset after a closing write") }
        reset = true
    }

    func close(_ onClose: (() -> Void)?) {
        closePromised = false
        closed = true
        delegate = nil
        onClose?()
    }

    var remoteAddress: SocketAddress? { nil }

    /// The responses written so far, parsed one after another.
    var responses: [TestResponse] {
        var result: [TestResponse] = []
        var rest = ArraySlice(written)
        while let (response, used) = Self.parseOne(rest) {
            result.append(response)
            rest = rest.dropFirst(used)
        }
        return result
    }

    /// One response from the front of `bytes` and the bytes it took (Content-Length bodies).
    private static func parseOne(_ bytes: ArraySlice<UInt8>) -> (TestResponse, Int)? {
        let marker: [UInt8] = Array("\r\n\r\n".utf8)
        guard bytes.count >= 4,
              let end = (bytes.startIndex...(bytes.endIndex - 4)).first(where: { Array(bytes[$0..<$0 + 4]) == marker }),
              let head = RawHTTP.parse(Array(bytes[..<(end + 4)]), headOnly: true) else { return nil }
        let length = Int(head.headers["content-length"] ?? "0") ?? 0
        let headBytes = end + 4 - bytes.startIndex
        guard bytes.count - headBytes >= length else { return nil }
        var response = head
        response.body = Array(bytes[(end + 4)..<(end + 4 + length)])
        return (response, headBytes + length)
    }
}

/// A host of the fixture table running in this process, served through memory streams: no
/// socket, no process, driven one loop iteration at a time (hops to real peers work: the loop
/// runs their sockets). Services that finish on another thread (async ones) are left to the
/// process tests: an in-process host is driven from the test's thread, which is not its loop's.
final class InProcessHost {
    let host: ServiceHost

    init(service: String, role: HostRole = .service, configure: (inout HostConfiguration) -> Void = { _ in }) throws {
        var configuration = HostConfiguration(appPath: BuildProducts.fixture, service: service)
        configuration.logLevel = .error
        configure(&configuration)
        host = try ServiceHost(configuration: configuration, table: try ServiceTable(path: BuildProducts.fixture), role: role)
        host.startInProcess()
    }

    /// A host configured as `dyninka-host serve` would be with these flags (read by the same
    /// `HostOptions`), for tests that run against both kinds of host.
    convenience init(service: String, flags: [String]) throws {
        let configuration = try HostConfiguration.parse(
            arguments: ["--app", BuildProducts.fixture, "--service", service, "--log-level", "error"] + flags)
        try self.init(service: service) { $0 = configuration }
    }

    /// A new client connection.
    func connect() -> MemoryStream {
        let stream = MemoryStream(loop: host.eventLoop)
        host.serve(stream)
        return stream
    }

    /// Runs the loop until `done` holds or `iterations` pass, enforcing deadlines as the
    /// process's sweep timer does.
    func run(until done: () -> Bool, iterations: Int = 2_000) {
        var left = iterations
        while !done(), left > 0 {
            host.runOnce()
            host.context.sweepDeadlines()
            left -= 1
            if !done() { usleep(200) }
        }
    }

    /// Sends `request` on a new connection and returns the first response.
    func exchange(_ request: String) -> TestResponse? {
        let stream = connect()
        stream.deliver(request)
        run(until: { !stream.responses.isEmpty })
        return stream.responses.first
    }
}
