/// A connection the host serves: what `InboundConnection` needs of it. `TCPHandle` is the real
/// one; a test can serve an in-memory stream instead and feed the host bytes without a socket.
package protocol ByteStream: AnyObject {
    /// Starts delivering reads to `delegate` (held until the stream closes).
    func startReading(_ delegate: any TCPHandleDelegate)
    /// Delivers what has already arrived to `delegate`, now (or nothing), without watching the
    /// stream: later bytes wait until `startReading`. Write completions go to `delegate` too.
    func readAvailable(into delegate: any TCPHandleDelegate)
    /// Stops delivering reads until `startReading` is called again.
    func stopReading()
    /// Writes `head` (borrowed for this call) then `body` (kept alive by its owner until done).
    /// `closing`: the stream closes right after a `.done`, and the peer sent nothing unread (see
    /// `TCPHandle.write(_:_:closing:)`: the close's FIN then goes with these bytes).
    func write(_ head: UnsafeRawBufferPointer, _ body: OwnedBytes, closing: Bool) -> WriteStatus
    /// Makes the close send RST instead of FIN.
    func setResetOnClose()
    /// Closes the stream; `onClose` runs once it is closed.
    func close(_ onClose: (() -> Void)?)
    /// The peer's address, when there is one.
    var remoteAddress: SocketAddress? { get }
}

extension TCPHandle: ByteStream {}
