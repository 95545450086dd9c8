import DyninkaTestSupport
import Foundation
import Testing
@testable import DyninkaHost

/// How a host test runs its host. The same test body runs against both, as HummingbirdTesting
/// runs one against `.router` and `.live`: in this process first (memory streams for its
/// clients, its loop driven by the test, real sockets for its hops: fast, and a failure shows
/// where in the host it happened), then as a real `dyninka-host` process (the binary, its
/// flags, its sockets and its process). Process-only stay: signals, drain, descriptors and TCP
/// segments; what only a process has (its memory, its standard error, a socket's receive buffer);
/// async services, whose library takes one host's loop per process (`ServiceTable.lend`), so
/// that in-process hosts of parallel tests cannot share it; and gateway mode's orchestrator
/// behind a real gateway, which needs the gateway's listening socket.
enum HostMode: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case inProcess = "in process"
    case process

    var testDescription: String { rawValue }

    /// Starts `service` of the fixture table with `dyninka-host serve` flags: `peers` are where
    /// other services listen (ports on 127.0.0.1).
    func start(_ service: String, peers: [String: Int] = [:], flags: [String] = []) throws -> any TestHost {
        switch self {
        case .process:
            return try HostProcess(service: service, peers: peers, arguments: flags)
        case .inProcess:
            let peerFlags = peers.isEmpty ? [] : ["--peers", peers.map { "\($0.key)=127.0.0.1:\($0.value)" }.sorted().joined(separator: ",")]
            return try InProcessHost(service: service, flags: peerFlags + flags)
        }
    }

    /// Starts gateway mode's gateway in front of `functions` (ports on 127.0.0.1, by name).
    func startGateway(functions: [String: Int]) throws -> any TestHost {
        let list = functions.map { "\($0.key)=127.0.0.1:\($0.value)" }.sorted().joined(separator: ",")
        switch self {
        case .process:
            return try HostProcess(name: "gateway", commandLine: ["gateway-mode", "gateway", "--port", "0", "--functions", list,
                                                                  "--log-level", "error"])
        case .inProcess:
            var peers = PeerMap()
            try peers.add(list: list)
            return try InProcessHost(service: "gateway", role: .gateway(functions: peers)) { $0.appPath = "-" }
        }
    }

    /// Starts gateway mode's function instance of `service` (it never forwards).
    func startFunction(_ service: String) throws -> any TestHost {
        switch self {
        case .process:
            return try HostProcess(name: service, commandLine: ["gateway-mode", "function", "--app", BuildProducts.fixture,
                                                                "--service", service, "--port", "0", "--log-level", "error"])
        case .inProcess:
            return try InProcessHost(service: service, role: .function)
        }
    }

    /// Starts gateway mode's orchestrator, calling each step of main's chain through the gateway
    /// at `gateway` (a port on 127.0.0.1).
    func startOrchestrator(gateway: Int) throws -> any TestHost {
        switch self {
        case .process:
            return try HostProcess(name: "orchestrator", commandLine: ["gateway-mode", "orchestrator", "--app", BuildProducts.fixture,
                                                                       "--port", "0", "--gateway", "127.0.0.1:\(gateway)", "--log-level", "error"])
        case .inProcess:
            return try InProcessHost(service: "orchestrator", role: .orchestrator(gateway: PeerAddress(host: "127.0.0.1", port: gateway)))
        }
    }
}

/// A host under test, either kind: what a client can do to it.
protocol TestHost: AnyObject {
    /// Sends exactly `bytes` on a new connection and returns the first answer.
    func exchange(_ bytes: [UInt8]) throws -> TestResponse
    /// Whether the host still serves (a process that died does not).
    var isRunning: Bool { get }
}

extension TestHost {
    func post(_ body: String = "", route: String? = nil, arguments: String? = nil, path: String = "/",
              extra: [(String, String)] = []) throws -> TestResponse {
        try exchange(RawHTTP.post(body, route: route, arguments: arguments, path: path, extra: extra))
    }

    func get(_ path: String) throws -> TestResponse { try exchange(RawHTTP.get(path)) }

    /// The value of one series of its /metrics.
    func metric(_ series: String) throws -> Double? {
        let text = try get("/metrics").text
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(series + " ") }) else { return nil }
        return Double(line.split(separator: " ").last ?? "")
    }
}

extension HostProcess: TestHost {
    func exchange(_ bytes: [UInt8]) throws -> TestResponse { try client.exchange(bytes) }
    var isRunning: Bool { process.isRunning }
}

extension InProcessHost: TestHost {
    /// Runs the loop until the answer is whole (up to 10 s, as RawHTTP waits).
    /// A HEAD's answer is its head alone, taken once the host closed (Connection: close).
    func exchange(_ bytes: [UInt8]) throws -> TestResponse {
        let stream = connect()
        stream.deliver(bytes)
        let isHead = bytes.starts(with: Array("HEAD ".utf8))
        let deadline = Date().addingTimeInterval(10)
        while stream.responses.isEmpty || isHead, !stream.closed, Date() < deadline {
            run(until: { (!stream.responses.isEmpty && !isHead) || stream.closed }, iterations: 50)
        }
        if isHead, let head = RawHTTP.parse(stream.written, headOnly: true) { return head }
        guard let response = stream.responses.first else {
            let written = String(decoding: stream.written.prefix(300), as: UTF8.self)
            throw stream.closed ? RawHTTPError.closedWithoutResponse(written) : RawHTTPError.timeout
        }
        return response
    }

    var isRunning: Bool { true }
}
