import DyninkaHTTP
import DyninkaLoop
import DyninkaRoute

/// A host serving several services of the app (fusion, `--service a,b,c`). A request goes to the
/// service its path names (`/NAME`; `/` runs the first one listed), and when a route's next step
/// is one of these services, the invocation calls it in process (`continueRequest`) instead of
/// forwarding. To callers nothing changes: the same statuses, failures naming the stage, a
/// Server-Timing entry, a span and a metrics series per stage.
///
/// A trap in any of these services ends the process, and with it every service it serves: a
/// stage that must stay isolated is kept out of the group (`@Service(isolated: true)`).
final class FusedResponder: Responder {
    /// The services, the first one (which `/` runs) first.
    let stages: [PointToPointResponder]
    private let byPath: [String: PointToPointResponder]

    init(stages: [PointToPointResponder]) {
        precondition(!stages.isEmpty, "a fused host serves at least one service")
        self.stages = stages
        var byPath: [String: PointToPointResponder] = [:]
        for stage in stages { byPath[stage.servicePath] = stage }
        self.byPath = byPath
    }

    private func stage(for path: String) -> PointToPointResponder? { path == "/" ? stages[0] : byPath[path] }

    func respond(to request: Request, on connection: InboundConnection) {
        // Another path: the first service refuses it (404 naming what this host serves).
        (stage(for: request.path) ?? stages[0]).respond(to: request, on: connection)
    }

    func serves(_ path: String) -> Bool { stage(for: path) != nil }

    func describe() -> String? { stages[0].describe() }

    func startLine(address: String) -> String {
        let names = stages.map { "'\($0.app.service.name)'" }.joined(separator: ", ")
        return "serving \(names) of \(stages[0].app.table.appName) fused on http://\(address) (POST /NAME; / runs '\(stages[0].app.service.name)'); calls between them stay in process"
    }

    var startWarnings: [String] { stages.flatMap(\.startWarnings) }
}

extension PointToPointResponder {
    /// Runs this service as the next stage of a request an earlier stage of this process ran
    /// (fusion), with that stage's output: its value as it is (ABI 4), or its JSON. The route and
    /// arguments are the ones a hop would carry, which that stage checked (and would have
    /// signed): only this service's plan is made, once per target. What this stage answers goes
    /// to the client with the earlier stages' entries first.
    func continueRequest(_ target: HopTarget, output: LibraryOutput, on connection: InboundConnection, upstream: consuming [FusedStage],
                         trace: TraceContext, started: UInt64, deadline: Deadline?, bound: StageBound?) {
        let plan: RoutePlan
        let arguments: [PreparedArgument]
        do throws(RouteError) {
            if let cached = target.localPlan {
                plan = cached
            } else {
                plan = try app.routePlan(target.route)
                target.localPlan = plan
            }
            if target.arguments.isEmpty {
                arguments = try app.defaultArguments.get()
                try plan.withDefaultArguments.get()
            } else {
                let custom = try app.preparedArguments(target.arguments)
                arguments = custom.prepared
                try app.checkLimits(plan, arguments: custom.visits)
            }
        } catch {
            let failure = ServiceFailure(service: app.service.name, kind: .badRoute, message: error.message)
            var answer = Answer(failure: failure, timing: HopTiming(name: app.service.name, started: started, trace: trace))
            answer.upstream = consume upstream
            return connection.send(answer, body: failure.body.owned, failure: failure)
        }
        let invocation = Invocation(context: context, app: app, connection: connection, plan: plan, arguments: arguments,
                                    input: output.isValue ? nil : output.owned, inputValue: output.isValue ? output : nil,
                                    started: started, trace: trace)
        invocation.deadline = deadline
        // Moved along, never copied: the stage after appends to it in place (the stages run
        // nested on the stack, and a copy held by each caller would cost O(stages) per stage).
        invocation.upstream = consume upstream
        invocation.bound = bound
        invocation.start()
    }
}
