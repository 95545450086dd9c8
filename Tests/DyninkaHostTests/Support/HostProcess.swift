import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the build put our binaries: beside the test bundle.
enum BuildProducts {
    static var directory: URL {
        if let dir = ProcessInfo.processInfo.environment["DYNINKA_BUILD_DIR"] { return URL(fileURLWithPath: dir) }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return exe.deletingLastPathComponent()
    }
    static var host: String { directory.appendingPathComponent("dyninka-host").path }
    static var fixture: String { directory.appendingPathComponent("libDyninkaFixture.so").path }
}

/// A real `dyninka-host serve` process on 127.0.0.1, on a port the kernel picked.
final class HostProcess: @unchecked Sendable {
    let service: String
    let process = Process()
    private(set) var port = 0
    /// The address it printed (127.0.0.1 unless it was told otherwise).
    private(set) var address = "127.0.0.1"
    private let stderrPipe = Pipe()
    private let stdoutPipe = Pipe()

    /// Starts the host and waits until it prints the address it serves on.
    convenience init(service: String, peers: [String: Int] = [:], port: Int = 0, arguments: [String] = [],
                     app: String = BuildProducts.fixture, environment: [String: String] = [:]) throws {
        var args = ["serve", "--app", app, "--service", service, "--port", String(port), "--log-level", "warning"]
        if !peers.isEmpty {
            args += ["--peers", peers.map { "\($0.key)=127.0.0.1:\($0.value)" }.sorted().joined(separator: ",")]
        }
        try self.init(name: service, commandLine: args + arguments, environment: environment)
    }

    /// Starts `dyninka-host` with exactly `commandLine` (which must print the usual address line),
    /// through `launcher` when given (for example `unshare -m sh -c ...`, which must exec the host
    /// given as its last arguments). The address line must contain `addressPrefix`.
    init(name: String, commandLine: [String], environment: [String: String] = [:], launcher: [String] = [],
         addressPrefix: String = "127.0.0.") throws {
        self.service = name
        if launcher.isEmpty {
            process.executableURL = URL(fileURLWithPath: BuildProducts.host)
            process.arguments = commandLine
        } else {
            process.executableURL = URL(fileURLWithPath: launcher[0])
            process.arguments = Array(launcher.dropFirst()) + [BuildProducts.host] + commandLine
        }
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        try process.run()
        let line = try Self.readLine(stdoutPipe.fileHandleForReading, timeout: 10)
        guard let colon = line.lastIndex(of: ":"), line.contains(addressPrefix),
              let parsed = Int(line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            let errors = String(decoding: stderrPipe.fileHandleForReading.availableData, as: UTF8.self)
            throw HostProcessError.didNotStart("\(name): '\(line)' \(errors)")
        }
        self.port = parsed
        if let scheme = line.range(of: "http://") { address = String(line[scheme.upperBound..<colon]) }
    }

    var client: RawHTTP { RawHTTP(port: port, host: address) }

    /// Runs `dyninka-host` with `arguments` to its exit (a start that should fail): its status
    /// and what it wrote to standard error.
    static func run(_ arguments: [String]) throws -> (status: Int32, errors: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuildProducts.host)
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = Pipe()
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    private static func readLine(_ handle: FileHandle, timeout: Double) throws -> String {
        var pollfd = Glibc.pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
        var bytes: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard poll(&pollfd, 1, 100) > 0 else { continue }
            var c: UInt8 = 0
            let n = read(handle.fileDescriptor, &c, 1)
            if n <= 0 { break }
            if c == 10 { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(c)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// What the host wrote to standard error so far (read after it exited).
    func standardError() -> String {
        String(decoding: stderrPipe.fileHandleForReading.availableData, as: UTF8.self)
    }

    /// Waits for exit; returns the exit status, or nil on timeout.
    func waitForExit(timeout: Double = 10) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    func stop() {
        if process.isRunning {
            signal(SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

enum HostProcessError: Error { case didNotStart(String) }

/// Runs a command (found on PATH) to its end; its standard output, or the failure with what it said.
@discardableResult
func command(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        let said = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        throw HostProcessError.didNotStart("\(arguments.joined(separator: " ")): \(said)")
    }
    return text
}

/// Starts services last-to-first so each knows where its successors listen.
final class HostCluster: @unchecked Sendable {
    private(set) var hosts: [String: HostProcess] = [:]

    /// `order` lists services so that every service comes after those it calls.
    init(_ order: [String], arguments: [String: [String]] = [:]) throws {
        for service in order {
            let peers = hosts.mapValues(\.port)
            hosts[service] = try HostProcess(service: service, peers: peers, arguments: arguments[service] ?? [])
        }
    }

    subscript(service: String) -> HostProcess { hosts[service]! }

    func stop() { hosts.values.forEach { $0.stop() } }
    deinit { stop() }
}
