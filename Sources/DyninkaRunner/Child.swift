import DyninkaCompiler
import DyninkaSystem
import DyninkaTestbed
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One supervised child process.
final class Child {
    let name: String
    let arguments: [String]
    let environment: [String: String]
    let port: Int
    let workingDirectory: String?
    let isService: Bool
    /// Where it listens (127.0.0.1, or its address on a test bed node).
    let host: String
    /// On a test bed: the node it runs on, and the node's network namespace.
    let node: String?
    var namespace: String? { node.map(Testbed.namespace(of:)) }
    var process: Process?
    var restarts: [Date] = []

    init(name: String, arguments: [String], environment: [String: String], port: Int, workingDirectory: String?, isService: Bool,
         host: String = "127.0.0.1", node: String? = nil) {
        self.name = name
        self.arguments = arguments
        self.environment = environment
        self.port = port
        self.workingDirectory = workingDirectory
        self.isService = isService
        self.host = host
        self.node = node
    }

    func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // `ip netns exec` enters the node's namespace (and its /etc/hosts) and then executes the
        // command in place: the process is still ours to supervise and signal.
        process.arguments = (namespace.map { ["ip", "netns", "exec", $0] } ?? []) + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.standardError
        do { try process.run() } catch {
            throw RunFailure(description: "cannot start \(name) (\(arguments.joined(separator: " "))): \(error.localizedDescription)")
        }
        self.process = process
    }

    var isRunning: Bool { process?.isRunning ?? false }
}
