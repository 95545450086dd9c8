import Foundation

/// What a finished command printed.
package struct CommandOutput: Sendable {
    package var status: Int32
    package var stdout: String
    package var stderr: String
}

/// The one way this module runs a tool (kubectl, ip, tc, iptables-restore, sysctl) to its end
/// with what it printed: no shell, output into files rather than pipes, so that a long listing
/// can never fill a pipe while the command waits to exit.
package enum Command {
    /// Why a command could not be run at all (its own failures are in its output's status).
    package enum Failure: Error {
        /// The capture files could not be made.
        case setup(String)
        /// The executable could not be started.
        case launch(String)
    }

    /// Runs `executable` to its end. `environment` adds to (or overrides) this process's variables.
    ///
    /// Spawned and waited for directly (posix_spawn, waitpid), not through Foundation's Process:
    /// a tool that starts daemons of its own (the Kubernetes kit's `start`) left Process waiting
    /// for a child that had already exited.
    package static func run(_ executable: String, _ arguments: [String], input: String? = nil,
                            environment: [String: String] = [:]) throws(Failure) -> CommandOutput {
        let fm = FileManager.default
        let folder = NSTemporaryDirectory() + "dyninka-command-\(getpid())-\(UUID().uuidString)"
        do { try fm.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            throw .setup("cannot create \(folder): \(error.localizedDescription)")
        }
        defer { try? fm.removeItem(atPath: folder) }
        guard fm.createFile(atPath: folder + "/in", contents: Data((input ?? "").utf8)) else {
            throw .setup("cannot write \(folder)/in")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, folder + "/in", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, folder + "/out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, folder + "/err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let variables = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
        var argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = variables.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, &argv, &envp)
        guard spawned == 0 else { throw .launch("cannot run \(executable): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return CommandOutput(status: exit,
                             stdout: (try? String(contentsOfFile: folder + "/out", encoding: .utf8)) ?? "",
                             stderr: (try? String(contentsOfFile: folder + "/err", encoding: .utf8)) ?? "")
    }
}

extension Command {
    /// Runs a short tool with a little output (an `ip` command of a move) straight through
    /// posix_spawn: no shell, no `env`, no capture files; standard output is discarded and up to
    /// 4 KiB of standard error kept for the message. About a millisecond, where `run` takes tens:
    /// a service's move holds requests while these run.
    package static func quick(_ arguments: [String]) throws(Failure) -> CommandOutput {
        var pipe: [Int32] = [0, 0]
        guard Glibc.pipe(&pipe) == 0 else { throw .setup("pipe: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 2)
        posix_spawn_file_actions_addclose(&actions, pipe[0])
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for item in argv { free(item) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, arguments[0], &actions, nil, &argv, environ)
        close(pipe[1])
        defer { close(pipe[0]) }
        guard spawned == 0 else { throw .launch("cannot run \(arguments[0]): \(String(cString: strerror(spawned)))") }
        var stderr = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while stderr.count < 4096 {
            let n = read(pipe[0], &buffer, buffer.count)
            if n <= 0 { break }
            stderr += buffer[0..<n]
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return CommandOutput(status: exit, stdout: "", stderr: String(decoding: stderr, as: UTF8.self))
    }
}
