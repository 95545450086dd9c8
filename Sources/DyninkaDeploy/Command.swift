import Foundation

/// What a finished command printed.
public struct CommandOutput: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// The one way this module runs a tool (kubectl, ip, tc, iptables-restore, sysctl) to its end
/// with what it printed: no shell, output into files rather than pipes, so that a long listing
/// can never fill a pipe while the command waits to exit.
enum Command {
    /// Why a command could not be run at all (its own failures are in its output's status).
    enum Failure: Error {
        /// The capture files could not be made.
        case setup(String)
        /// The executable could not be started.
        case launch(String)
    }

    static func run(_ executable: String, _ arguments: [String], input: String? = nil) throws(Failure) -> CommandOutput {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let fm = FileManager.default
        let folder = NSTemporaryDirectory() + "dyninka-command-\(getpid())-\(UUID().uuidString)"
        do { try fm.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            throw .setup("cannot create \(folder): \(error.localizedDescription)")
        }
        defer { try? fm.removeItem(atPath: folder) }
        guard fm.createFile(atPath: folder + "/out", contents: nil), fm.createFile(atPath: folder + "/err", contents: nil),
              fm.createFile(atPath: folder + "/in", contents: Data((input ?? "").utf8)),
              let out = FileHandle(forWritingAtPath: folder + "/out"), let err = FileHandle(forWritingAtPath: folder + "/err"),
              let inp = FileHandle(forReadingAtPath: folder + "/in") else {
            throw .setup("cannot open the output files in \(folder)")
        }
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inp
        do { try process.run() } catch { throw .launch("cannot run \(executable): \(error.localizedDescription)") }
        process.waitUntilExit()
        try? out.close()
        try? err.close()
        try? inp.close()
        return CommandOutput(status: process.terminationStatus,
                             stdout: (try? String(contentsOfFile: folder + "/out", encoding: .utf8)) ?? "",
                             stderr: (try? String(contentsOfFile: folder + "/err", encoding: .utf8)) ?? "")
    }
}
