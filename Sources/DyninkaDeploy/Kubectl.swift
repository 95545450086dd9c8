import DyninkaSystem
import Foundation

/// Why a kubectl call failed, sorted into what a user can act on.
package struct KubectlFailure: Error, CustomStringConvertible, Sendable {
    /// What kind of failure kubectl reported.
    package enum Kind: Sendable, Equatable {
        /// No kubectl to run.
        case notInstalled
        /// The API server did not answer (refused, unknown host, timeout).
        case unreachable
        /// The server does not know who we are (401).
        case unauthorized
        /// The server knows the user, who may not do this (403).
        case forbidden
        /// The object does not exist (404).
        case notFound
        /// The server refused an object: invalid, unknown field, conflict, admission.
        case refused
        /// Anything else (the message says what).
        case failed
    }

    package var kind: Kind
    /// The kubectl arguments that failed.
    package var arguments: [String]
    /// kubectl's own words (its standard error, trimmed).
    package var message: String

    package init(kind: Kind, arguments: [String], message: String) {
        self.kind = kind
        self.arguments = arguments
        self.message = message
    }

    /// Sorts kubectl's standard error: its wording is stable across versions ("Error from
    /// server (Forbidden)", "Unable to connect to the server", "The connection to the server ...
    /// was refused").
    package static func classify(_ message: String) -> Kind {
        let text = message.lowercased()
        if text.contains("(forbidden)") || text.contains(" is forbidden:") { return .forbidden }
        if text.contains("(unauthorized)") || text.contains("must be logged in") { return .unauthorized }
        if text.contains("unable to connect to the server") || text.contains("connection to the server")
            || text.contains("connection refused") || text.contains("no such host") || text.contains("i/o timeout")
            || text.contains("context deadline exceeded") || text.contains("tls handshake timeout")
            || text.contains("no configuration has been provided") {
            return .unreachable
        }
        if text.contains("(notfound)") || text.contains("not found") { return .notFound }
        if text.contains("error from server") || text.contains("is invalid") || text.contains("unknown field")
            || text.contains("error when creating") || text.contains("error when applying") {
            return .refused
        }
        return .failed
    }

    package var description: String { message }

    /// The user named in a 403 message (`User "restricted" cannot create ...`), if any.
    package var forbiddenUser: String? {
        guard let start = message.range(of: "User \"") else { return nil }
        let rest = message[start.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }
}

/// Runs kubectl (the user's, from PATH or $KUBECTL) with the user's kubeconfig: kubectl knows
/// every way a cluster authenticates, and what a deploy does is then exactly what the user could
/// type. Output is captured; nothing is read from standard input unless given.
package struct Kubectl: Sendable {
    /// The kubectl executable.
    package let executable: String
    /// Arguments put before every call (`--context NAME`).
    package let global: [String]

    /// Finds kubectl: `$KUBECTL`, else the first `kubectl` on PATH. `kubeconfig` nil: kubectl's
    /// own choice ($KUBECONFIG, ~/.kube/config, in-cluster).
    package init(context: String?, kubeconfig: String? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) throws(KubectlFailure) {
        var found: String?
        if let chosen = environment["KUBECTL"], !chosen.isEmpty {
            found = chosen
        } else {
            for folder in (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
                let path = "\(folder)/kubectl"
                if FileManager.default.isExecutableFile(atPath: path) { found = path; break }
            }
        }
        guard let found, FileManager.default.isExecutableFile(atPath: found) else {
            throw KubectlFailure(kind: .notInstalled, arguments: [],
                                 message: "kubectl is not installed (not on PATH, and KUBECTL is not set): install it (Debian: apt-get install kubectl) or set KUBECTL to its path")
        }
        executable = found
        global = (kubeconfig.map { ["--kubeconfig", $0] } ?? []) + (context.map { ["--context", $0] } ?? [])
    }

    /// What a call printed.
    package typealias Output = CommandOutput

    /// Runs `kubectl ARGS` and returns what it printed, whatever its exit status.
    package func call(_ arguments: [String], input: String? = nil) throws(KubectlFailure) -> Output {
        let all = global + arguments
        do { return try Command.run(executable, all, input: input) } catch {
            switch error {
            case .setup(let message): throw KubectlFailure(kind: .failed, arguments: all, message: message)
            case .launch(let message): throw KubectlFailure(kind: .notInstalled, arguments: all, message: message)
            }
        }
    }

    /// Runs `kubectl ARGS`; a non-zero exit throws, sorted by `KubectlFailure.classify`.
    @discardableResult
    package func run(_ arguments: [String], input: String? = nil) throws(KubectlFailure) -> String {
        let output = try call(arguments, input: input)
        guard output.status == 0 else {
            let message = output.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            let shown = message.isEmpty ? "kubectl exited with status \(output.status) and printed no error" : message
            throw KubectlFailure(kind: KubectlFailure.classify(shown), arguments: global + arguments, message: shown)
        }
        return output.stdout
    }

    /// Runs `kubectl ARGS -o json` and decodes the result.
    package func json<T: Decodable>(_ type: T.Type, _ arguments: [String]) throws(KubectlFailure) -> T {
        let text = try run(arguments + ["-o", "json"])
        do { return try JSONDecoder().decode(T.self, from: Data(text.utf8)) } catch {
            throw KubectlFailure(kind: .failed, arguments: global + arguments,
                                 message: "kubectl printed JSON this version of dyninka does not understand: \(error)")
        }
    }
}
