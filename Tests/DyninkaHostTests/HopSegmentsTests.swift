import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What a hop costs on the wire, counted by the kernel: real hosts in a network namespace of their
/// own, so that its TCP counters see only their traffic.
@Suite(.serialized, .enabled(if: geteuid() == 0, "needs root (a network namespace)"))
struct HopSegmentsTests {
    /// TCP segments sent so far in namespace `ns` (OutSegs of /proc/net/snmp there).
    static func segmentsSent(in ns: String) throws -> Int {
        let lines = try command(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"]).split(separator: "\n").filter { $0.hasPrefix("Tcp:") }
        guard lines.count == 2 else { throw HostProcessError.didNotStart("no Tcp lines in /proc/net/snmp of \(ns)") }
        let names = lines[0].split(separator: " ")
        let values = lines[1].split(separator: " ")
        guard let column = names.firstIndex(of: "OutSegs"), let value = Int(values[column]) else {
            throw HostProcessError.didNotStart("no OutSegs in /proc/net/snmp of \(ns)")
        }
        return value
    }

    /// `count` POSTs from one curl inside `ns`, one connection each (`Connection: close`); every
    /// one must be answered 200.
    static func post(in ns: String, port: Int, route: String, body: String, count: Int) throws {
        let codes = try command(["ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}\n",
                             "-X", "POST", "-H", "Connection: close", "-H", "Dyninka-Route: \(route)", "-d", body,
                             "http://127.0.0.1:\(port)/?[1-\(count)]"]).split(separator: "\n")
        #expect(codes.count == count && codes.allSatisfy { $0 == "200" }, "answers: \(codes)")
    }

    /// A hop's connection is six segments: SYN, SYN-ACK, the request carrying the handshake's last
    /// ACK, the server's ACK of it, the answer carrying the FIN, the caller's RST. The chain's
    /// requests less the same number sent straight to its last service leave the three hop
    /// connections per request (the client's own connection counts the same in both).
    @Test func aHopConnectionIsSixSegments() throws {
        let ns = "dyninka-segments-\(getpid())"
        try command(["ip", "netns", "add", ns])
        defer { _ = try? command(["ip", "netns", "del", ns]) }
        try command(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])
        let launcher = ["/usr/bin/env", "ip", "netns", "exec", ns]
        var hosts: [String: HostProcess] = [:]
        defer { hosts.values.forEach { $0.stop() } }
        for service in ["movingAvg", "scale", "map", "get"] {
            var arguments = ["serve", "--app", BuildProducts.fixture, "--service", service, "--port", "0", "--log-level", "warning"]
            if !hosts.isEmpty {
                arguments += ["--peers", hosts.map { "\($0.key)=127.0.0.1:\($0.value.port)" }.sorted().joined(separator: ",")]
            }
            hosts[service] = try HostProcess(name: service, commandLine: arguments, launcher: launcher)
        }
        let count = 40
        let chainPort = hosts["get"]!.port, lastPort = hosts["movingAvg"]!.port
        let route = "map().scale(by: 1.0).movingAvg()", value = #"{"value":30}"#
        // Once each first: the hosts' first requests set things up (names, pools).
        try Self.post(in: ns, port: chainPort, route: route, body: "{}", count: 1)
        try Self.post(in: ns, port: lastPort, route: "", body: value, count: 1)
        let before = try Self.segmentsSent(in: ns)
        try Self.post(in: ns, port: chainPort, route: route, body: "{}", count: count)
        let chain = try Self.segmentsSent(in: ns) - before
        try Self.post(in: ns, port: lastPort, route: "", body: value, count: count)
        let direct = try Self.segmentsSent(in: ns) - before - chain
        let perHop = Double(chain - direct) / Double(3 * count)
        // Exactly 6 on a quiet machine; a delayed ACK that fires under load adds one now and then.
        #expect(perHop >= 5.5 && perHop <= 6.3, "\(perHop) segments per hop connection (chain \(chain), direct \(direct), \(count) requests each)")
    }
}
