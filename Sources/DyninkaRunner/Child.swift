import DyninkaCompiler
import DyninkaSettings
import DyninkaSystem
import DyninkaTestbed
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How a `dyninka-host` child is started: the subcommand (`serve`, `gateway-mode ROLE`), its
/// settings, and the role's own flags (the gateway's `--functions`).
struct HostLaunch {
    var binary: String
    var subcommand: [String]
    var settings: HostSettings
    var roleArguments: [String] = []

    var arguments: [String] { [binary] + subcommand + settings.arguments() + roleArguments }
}

/// One supervised child process.
final class Child {
    let name: String
    let arguments: [String]
    /// For a host: how it was launched, so that a replacement can be launched like it.
    let launch: HostLaunch?
    let environment: [String: String]
    let port: Int
    let workingDirectory: String?
    let isService: Bool
    /// Where it listens (127.0.0.1, or its address on a test bed node).
    let host: String
    /// On a test bed: the node it runs on, and the node's network namespace.
    let node: String?
    var namespace: String? { node.map(Testbed.namespace(of:)) }
    /// The services it serves: its name, or the names of a fused group ("a,b,c"), first the one
    /// its `/` runs.
    var served: [String] { name.split(separator: ",").map(String.init) }

    /// Where each service it serves listens: the first at its host and port, the others at the
    /// addresses of `--also-listen` (a fused host keeps every member's own address).
    var addresses: [(name: String, host: String, port: Int)] {
        var list = [(served[0], host, port)]
        for entry in launch?.settings.alsoListen ?? [] {
            let parts = entry.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let colon = parts[1].lastIndex(of: ":"), let port = Int(parts[1][parts[1].index(after: colon)...]) else { continue }
            list.append((String(parts[0]), String(parts[1][..<colon]), port))
        }
        return list
    }
    var process: Process?
    var restarts: [Date] = []

    init(name: String, arguments: [String], environment: [String: String], port: Int, workingDirectory: String?, isService: Bool,
         host: String = "127.0.0.1", node: String? = nil) {
        self.name = name
        self.arguments = arguments
        self.launch = nil
        self.environment = environment
        self.port = port
        self.workingDirectory = workingDirectory
        self.isService = isService
        self.host = host
        self.node = node
    }

    /// A `dyninka-host` child: it listens where its settings say.
    init(name: String, launch: HostLaunch, environment: [String: String], node: String? = nil) {
        self.name = name
        self.arguments = launch.arguments
        self.launch = launch
        self.environment = environment
        self.port = launch.settings.port
        self.workingDirectory = nil
        self.isService = true
        self.host = launch.settings.host
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
