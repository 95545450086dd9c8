import ArgumentParser
import DyninkaDeploy
import Foundation

extension DyninkaCommand {
    /// `dyninka guard`: moves the pods of stateful services off cordoned nodes, with their state,
    /// so that `kubectl drain` loses neither state nor requests.
    struct Guard: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Keep @Placed state and requests through `kubectl drain` (Kubernetes).",
            discussion: """
                A deploy gives every service with @Placed state a PodDisruptionBudget that refuses \
                evictions, so `kubectl drain` cannot stop its pod before a successor has its state. \
                While this runs, a pod of such a service on a cordoned node (a drain cordons first) \
                is moved by a rollout: its new pod starts on another node, takes the state over \
                from the old one, and the old one goes; the drain then finds it gone and goes on. \
                A service placed on that very node stays, and the guard says so (the drain waits). \
                Run it where kubectl reaches the cluster, for as long as nodes may be drained.
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
                note("guarding the stateful services of \(scope) in context '\(cluster.context)' (\(cluster.server)): their pods leave cordoned nodes by a rollout that hands their @Placed state over")
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
