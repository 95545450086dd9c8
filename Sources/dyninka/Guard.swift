import ArgumentParser
import DyninkaDeploy
import Foundation

extension DyninkaCommand {
    /// `dyninka guard`: moves the app's pods off cordoned nodes by rollouts, so that `kubectl
    /// drain` loses neither requests nor @Placed state.
    struct Guard: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Keep requests and @Placed state through `kubectl drain` (Kubernetes).",
            discussion: """
                A deploy gives every service's pod a PodDisruptionBudget that refuses evictions: \
                an evicted single replica would leave its callers without an endpoint until its \
                replacement is ready, and a stateful one's state waiting in a stopping pod. While \
                this runs, a dyninka pod on a cordoned node (a drain cordons first) is moved by a \
                rollout: its new pod starts on another node and is ready (with the state handed \
                over, for a service with @Placed state) before the old one goes; the drain then \
                finds it gone and goes on. A service placed on that very node stays, and the \
                guard says so (the drain waits). Run it where kubectl reaches the cluster, for as \
                long as nodes may be drained.
                """)

        @Option(help: "Only this namespace (default: all namespaces).")
        var namespace: String?
        @Option(help: "The kubeconfig context to use (default: the current one).")
        var context: String?
        @Option(help: "Seconds between looks at the cluster.")
        var interval: Double = 2
        @Option(name: .customLong("for"), help: "Stop after this many seconds (default: run until stopped).")
        var duration: Double?
        @Flag(help: "Look once, act, and exit.")
        var once = false

        func validate() throws {
            guard interval >= 0.2 else { throw ValidationError("--interval must be at least 0.2 s") }
            if let duration, duration <= 0 { throw ValidationError("--for must be positive") }
        }

        func run() throws {
            var guardian: DrainGuard
            do {
                let kubectl = try Kubectl(context: context)
                let cluster = try KubernetesCluster.connect(kubectl, namespace: namespace)
                guardian = DrainGuard(kubectl: kubectl, namespace: namespace)
                let scope = namespace.map { "namespace '\($0)'" } ?? "all namespaces"
                note("guarding the dyninka pods of \(scope) in context '\(cluster.context)' (\(cluster.server)): they leave cordoned nodes by rollouts, the new pod ready (with any @Placed state) before the old one goes")
            } catch {
                note("error: \(error)")
                throw ExitCode(1)
            }
            let stop = duration.map { Date().addingTimeInterval($0) }
            var failures = 0
            while true {
                do {
                    try guardian.pass { say(Self.stamped($0)) }
                    failures = 0
                } catch {
                    // The API server may be away for a moment (a restart): say so and go on.
                    failures += 1
                    if failures == 1 || failures % 30 == 0 { note("kubectl failed (\(failures) time(s) in a row), trying again: \(error)") }
                    if once { throw ExitCode(1) }
                }
                if once { return }
                if let stop, Date() >= stop { return }
                Thread.sleep(forTimeInterval: interval)
            }
        }

        /// `HH:MM:SS line`.
        static func stamped(_ line: String) -> String {
            let formatter = DateFormatter()
            formatter.dateFormat = "HH:mm:ss"
            return formatter.string(from: Date()) + " " + line
        }
    }
}
