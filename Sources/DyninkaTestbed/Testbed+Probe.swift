import DyninkaCompiler
import DyninkaSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Measuring the bed's links from inside its nodes: round trips, loss and throughput.
extension Testbed {
    // MARK: - Probe

    /// A socket in node `b` (to listen on) and one in node `a` (to send from), and `b` itself.
    private static func sockets(from a: String, to b: String, type: Int32, state: State) throws(TestbedFailure)
        -> (to: NodeState, server: Int32, client: Int32) {
        guard state.node(a) != nil, let to = state.node(b) else { throw TestbedFailure("no such node: \(state.node(a) == nil ? a : b)") }
        let server: Int32
        do { server = try NetworkNamespace.socket(in: to.namespace, type: type) } catch { throw TestbedFailure(error.description) }
        do {
            return (to, server, try NetworkNamespace.socket(in: Testbed.namespace(of: a), type: type))
        } catch {
            close(server)
            throw TestbedFailure(error.description)
        }
    }

    /// Round trips of small UDP datagrams from node `a` to node `b` (an echo in `b`), in ms: what
    /// the link's delay gives (a round trip crosses it twice). Lost probes are left out.
    package static func probe(from a: String, to b: String, count: Int, state: State) throws(TestbedFailure) -> (rtts: [Double], lost: Int) {
        let (to, server, client) = try sockets(from: a, to: b, type: Int32(SOCK_DGRAM.rawValue), state: state)
        defer { close(client) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(7).bigEndian
        address.sin_addr.s_addr = inet_addr(to.address)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { close(server); throw TestbedFailure("cannot bind the probe's echo on \(to.address):7") }
        // A token per probe: late packets of an earlier probe (a delayed "quit" above all) are
        // not taken for this one's.
        let token = UInt32.random(in: 1...UInt32.max)
        let echo = Thread {
            var buffer = [UInt8](repeating: 0, count: 2048)
            var peer = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            while true {
                let n = buffer.withUnsafeMutableBytes { bytes in
                    withUnsafeMutablePointer(to: &peer) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(server, bytes.baseAddress, bytes.count, 0, $0, &length) } }
                }
                if n <= 0 { break }
                if n == 8, buffer[0] == 0x71, buffer[4..<8].elementsEqual(withUnsafeBytes(of: token) { Array($0) }) { break }  // this probe's "quit"
                _ = buffer.withUnsafeBytes { bytes in
                    withUnsafePointer(to: &peer) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(server, bytes.baseAddress, n, 0, $0, length) } }
                }
            }
            close(server)
        }
        echo.start()
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var rtts: [Double] = []
        var lost = 0
        var packet = [UInt8](repeating: 0x70, count: 64)
        withUnsafeBytes(of: token) { packet.replaceSubrange(4..<8, with: $0) }
        for sequence in 0..<count {
            packet[1] = UInt8(sequence & 0xff)
            let start = DispatchTime.now().uptimeNanoseconds
            _ = packet.withUnsafeBytes { bytes in
                withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(client, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            }
            var reply = [UInt8](repeating: 0, count: 128)
            var answered = false
            while true {
                let n = reply.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                if n == 64, reply[1] == packet[1], reply[4..<8] == packet[4..<8] { answered = true; break }  // an older, late answer otherwise
            }
            if answered { rtts.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6) } else { lost += 1 }
            usleep(10_000)
        }
        let quit: [UInt8] = [0x71, 0x75, 0x69, 0x74] + withUnsafeBytes(of: token) { Array($0) }
        for _ in 0..<3 {
            _ = quit.withUnsafeBytes { bytes in
                withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(client, bytes.baseAddress, 8, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            }
        }
        // The echo ends when the quit arrives (a lost one leaves the thread to the process's end).
        usleep(UInt32(min(2 * state.conditions(a, b).delayMs + 20, 1000) * 1000))
        return (rtts, lost)
    }

    /// Sends `bytes` over TCP from node `a` to node `b` and returns the goodput in Mbit/s (what
    /// a link's rate gives, less TCP/IP headers, about 5%).
    package static func throughput(from a: String, to b: String, bytes: Int, state: State) throws(TestbedFailure) -> Double {
        let (to, listener, client) = try sockets(from: a, to: b, type: Int32(SOCK_STREAM.rawValue), state: state)
        defer { close(client) }
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(9).bigEndian
        address.sin_addr.s_addr = inet_addr(to.address)
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, size) } }
        guard bound == 0, listen(listener, 1) == 0 else { close(listener); throw TestbedFailure("cannot listen on \(to.address):9") }
        let sink = Thread {
            let connection = accept(listener, nil, nil)
            close(listener)
            guard connection >= 0 else { return }
            var buffer = [UInt8](repeating: 0, count: 65536)
            while buffer.withUnsafeMutableBytes({ recv(connection, $0.baseAddress, $0.count, 0) }) > 0 {}
            _ = send(connection, [UInt8(1)], 1, Int32(MSG_NOSIGNAL))
            close(connection)
        }
        sink.start()
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, size) } }
        guard connected == 0 else { throw TestbedFailure("cannot connect from \(a) to \(to.address):9") }
        let chunk = [UInt8](repeating: 0x61, count: 65536)
        let start = DispatchTime.now().uptimeNanoseconds
        var sent = 0
        while sent < bytes {
            let n = chunk.withUnsafeBytes { send(client, $0.baseAddress, min($0.count, bytes - sent), Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestbedFailure("the transfer from \(a) to \(b) broke after \(sent) bytes") }
            sent += n
        }
        shutdown(client, Int32(SHUT_WR))
        var done: UInt8 = 0
        guard recv(client, &done, 1, 0) == 1 else { throw TestbedFailure("\(b) did not confirm the transfer") }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return Double(bytes) * 8 / seconds / 1e6
    }
}
