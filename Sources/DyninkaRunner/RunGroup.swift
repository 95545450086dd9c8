import DyninkaCompiler
import DyninkaTestbed
import Foundation

/// Something a running app does beside its services: watching the file, taking move requests,
/// adapting placement. Each is independent of the others; a `RunGroup` runs them together on
/// the supervisor's thread and gives them one shutdown, as ServiceLifecycle's `ServiceGroup`
/// does for services.
package protocol RunActivity: AnyObject {
    /// What the log calls it.
    var name: String { get }
    /// One step, every supervisor tick (100 ms). Steps of different activities never overlap,
    /// so a move and a swap never race; an error is logged and the activity steps on next tick.
    func step(_ runner: LocalRunner) throws
    /// At shutdown, once, in the reverse order of the group.
    func shutDown()
}

extension RunActivity {
    package func shutDown() {}
}

/// Who hears what the activities changed: the terminal and the live view.
package protocol RunObserver: AnyObject {
    /// A line for the terminal and the view's timeline.
    func announce(_ line: String)
    /// Hosts moved, were swapped, added or removed: where they are now is `runner`'s.
    func hostsChanged(_ runner: LocalRunner)
    /// The app was rebuilt and runs as `ir` now.
    func appChanged(_ ir: AppIR)
}

/// The running app and its activities, with one shutdown: `run` supervises the services and
/// steps every activity until SIGINT or SIGTERM, then shuts the activities down in reverse order
/// and stops the services (they drain).
package final class RunGroup {
    package let runner: LocalRunner
    package let activities: [any RunActivity]

    package init(runner: LocalRunner, activities: [any RunActivity]) {
        self.runner = runner
        self.activities = activities
    }

    package func run() {
        runner.supervise { [runner, activities] in
            for activity in activities {
                do { try activity.step(runner) } catch { runner.log("error: \(activity.name): \(error)") }
            }
        }
        runner.log("stopping")
        for activity in activities.reversed() { activity.shutDown() }
        runner.stop()
    }
}

/// Takes the moves that `dyninka move` asks for (through the test bed's mailbox) and carries
/// them out; `dyninka move` hears whether the state went along.
package final class MoveMailbox: RunActivity {
    package let name = "moves"
    private let observer: any RunObserver

    package init(observer: any RunObserver) { self.observer = observer }

    package func step(_ runner: LocalRunner) {
        Testbed.serveMoveRequests { request in
            do {
                let report = try runner.move(request.service, to: request.node)
                observer.announce(report.description)
                observer.hostsChanged(runner)
                // The move happened; `dyninka move` still fails when the state did not go with it.
                return (report.state.carried, report.description)
            } catch {
                runner.log("error: cannot move \(request.service): \(error)")
                return (false, "\(error)")
            }
        }
    }
}
