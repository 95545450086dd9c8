import DyninkaCompiler
import Foundation

/// `dyninka run --watch`: polls the file (10 times a second); a saved change is checked and
/// rebuilt, and each service whose code hash changed is swapped (LocalRunner.swap); services added
/// start, removed ones stop, and a service whose route alone changed takes it without a restart.
package final class FileWatch: RunActivity {
    package let name = "watch"
    let file: String
    let out: String?
    var running: AppIR
    private let observer: any RunObserver
    var modified: Date?

    package init(file: String, out: String?, running: AppIR, observer: any RunObserver) {
        self.observer = observer
        self.file = file
        self.out = out
        self.running = running
        modified = Self.modified(file)
    }

    static func modified(_ file: String) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: file))?[.modificationDate] as? Date
    }

    package func step(_ runner: LocalRunner) {
        let note = runner.log
        guard let now = Self.modified(file), now != modified else { return }
        modified = now
        let saved = Date()
        note("\(file) changed: checking and rebuilding")
        let build: BuildResult
        do {
            let builder = AppBuilder(sourceRoot: try AppBuilder.locateSourceRoot())
            build = try builder.build(file: file, output: out) { _ in }
            for warning in build.warnings { note(warning.description) }
        } catch let failure as CompileFailure {
            note(failure.description)
            note("the running services keep the previous code; fix the file and save again")
            return
        } catch {
            note("error: \(error)")
            note("the running services keep the previous code")
            return
        }
        let built = Date()
        let plan = SwapPlan(from: running, to: build.ir)
        let (added, removed) = (plan.added, plan.removed)
        if (!added.isEmpty || !removed.isEmpty) && runner.bed != nil {
            note("services were added or removed (\((added + removed).joined(separator: ", "))): on a test bed, restart `dyninka run` to run them; nothing was swapped")
            return
        }
        let changed = plan.changed.compactMap { build.ir.service($0) }
        let rerouted = plan.rerouted.compactMap { build.ir.service($0) }
        if changed.isEmpty && rerouted.isEmpty && added.isEmpty && removed.isEmpty {
            note("no service's code changed (built in \(Int(built.timeIntervalSince(saved) * 1000)) ms); nothing to swap")
            running = build.ir
            return
        }
        for name in added {
            do {
                let ms = try runner.add(name, library: build.library)
                let line = String(format: "added %@: its host answered %.0f ms after it started", name, ms)
                announce(line, runner)
            } catch {
                note("error: cannot start the added service \(name): \(error)")
            }
        }
        for service in rerouted {
            // main's chain changed what follows this service, not its code: the running host takes
            // the new route (no restart, its state stays where it is).
            let arguments = service.parameters.allSatisfy({ $0.defaultArgument != nil }) && !service.parameters.isEmpty
                ? service.parameters.map { ($0.label == "_" ? "" : "\($0.label): ") + ($0.defaultArgument ?? "") }.joined(separator: ", ") : nil
            do {
                let ms = try runner.reroute(service.name, route: service.defaultRoute, arguments: arguments)
                let line = String(format: "rerouted %@ in %.0f ms, without a restart: after it now %@", service.name, ms,
                                  service.defaultRoute.isEmpty ? "nothing (it answers)" : service.defaultRoute)
                announce(line, runner)
            } catch {
                note("error: cannot reroute \(service.name): \(error)")
            }
        }
        for service in changed {
            do {
                let report = try runner.swap(service.name, library: build.library)
                // What the new host says it restored, not what the hashes predict.
                let state = report.state.description
                let reason = plan.callingAdded[service.name].map { " (its route calls the added \($0.joined(separator: ", ")))" } ?? ""
                let line = String(format: "swapped %@%@ in %.0f ms from save (check and build %.0f ms, new host listening %.0f ms, hand-over %.0f ms); %@",
                                  service.name, reason, Date().timeIntervalSince(saved) * 1000, built.timeIntervalSince(saved) * 1000,
                                  report.startMs, report.handoverMs, state)
                announce(line, runner)
            } catch {
                note("error: cannot swap \(service.name): \(error)")
            }
        }
        for name in removed {
            runner.remove(name)
            let line = "removed \(name): its host drained and stopped"
            announce(line, runner)
        }
        runner.adopt(build.ir)
        observer.appChanged(build.ir)
        if build.ir.dataflow.entry != running.dataflow.entry {
            note("main's chain now starts at \(build.ir.dataflow.entry): clients post to \(runner.entryURL) from now on")
        }
        running = build.ir
    }

    /// Says what changed on the terminal and on the view's timeline, whose hosts follow.
    private func announce(_ line: String, _ runner: LocalRunner) {
        observer.announce(line)
        observer.hostsChanged(runner)
    }
}

