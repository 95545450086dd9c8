import DyninkaHTTP
import DyninkaLoop
import DyninkaRoute

/// A request the server hands to its role: the parsed head, the body (kept alive by its owner),
/// the path without a query, and when it arrived.
struct Request {
    let head: HTTPHead
    let body: OwnedBytes?
    let path: String
    let started: UInt64
    /// Its W3C trace context at this hop.
    let trace: TraceContext
}

/// What a host does with the requests its server does not answer itself (health, readiness,
/// metrics): one responder per role, chosen once at start (point to point, function instance,
/// gateway, orchestrator). The server holds the request's in-flight slot; the responder answers
/// exactly once on the connection.
protocol Responder: AnyObject {
    /// Answers a POST to any path (refusing the paths it does not serve).
    func respond(to request: Request, on connection: InboundConnection)
    /// Whether `path` names what this host runs: other methods there get 405, not 404.
    func serves(_ path: String) -> Bool
    /// What GET / answers (JSON); nil: 404.
    func describe() -> String?
    /// The line logged when serving starts at `address`.
    func startLine(address: String) -> String
    /// Warnings worth saying once at start (missing peers).
    var startWarnings: [String] { get }
}

extension Responder {
    var startWarnings: [String] { [] }
    func describe() -> String? { nil }
}

extension InboundConnection {
    /// Answers `failure` as this hop's own error, counted in the metrics under `service`.
    func refuse(_ failure: ServiceFailure, counted service: String, request: Request, context: HostContext) {
        send(failure, timing: HopTiming(name: service, started: request.started, trace: request.trace))
    }
}

/// What the responders that run the app's service share: its path, its description, and the
/// checks every request passes first (the path, then the client's deadline).
class ServiceResponder {
    unowned(unsafe) let context: HostContext
    let app: AppService
    /// The name refusals give (the service's, or the role's for the orchestrator).
    let name: String
    /// "/NAME": the service's own path, built once rather than per request.
    let servicePath: String
    /// The service's name as bytes (what a hop's signature names), made once.
    let serviceName: [UInt8]

    init(context: HostContext, app: AppService, name: String) {
        self.context = context
        self.app = app
        self.name = name
        app.series = context.metrics.series(app.service.name)
        servicePath = "/\(name)"
        serviceName = Array(name.utf8)
    }

    func serves(_ path: String) -> Bool { path == "/" || path == servicePath }

    func describe() -> String? { app.describe() }

    /// Whether a request may go on.
    enum Admission {
        /// Refused (and answered): another path, or a bad Dyninka-Deadline.
        case refused
        /// Admitted, with the client's deadline (nil: none).
        case admitted(deadline: Deadline?)
    }

    /// Answers a request for a path this service does not serve, or with a bad deadline.
    func admit(_ request: Request, on connection: InboundConnection) -> Admission {
        guard serves(request.path) else {
            connection.refuse(ServiceFailure(service: name, kind: .badRoute, message: noSuchPath(request.path, service: name), status: 404),
                              counted: name, request: request, context: context)
            return .refused
        }
        switch Deadline.of(request.head, started: request.started) {
        case .success(let deadline):
            return .admitted(deadline: deadline)
        case .failure(let failure):
            connection.refuse(ServiceFailure(service: name, kind: .badInput, message: failure.message),
                              counted: name, request: request, context: context)
            return .refused
        }
    }
}

/// Point to point (the default role): run the service, forward its output along the route the
/// request carries (or main's), and relay what comes back.
final class PointToPointResponder: ServiceResponder, Responder {
    init(context: HostContext, app: AppService) {
        super.init(context: context, app: app, name: app.service.name)
    }

    func startLine(address: String) -> String {
        "serving '\(app.service.name)' of \(app.table.appName) on http://\(address) (route after it: \(app.defaultRoute.chain.isEmpty ? "none" : app.defaultRoute.chain.source))"
    }

    /// Every service this one may forward to by default should have an address: say so at start
    /// rather than at the first request (a host may still run alone, for a test or a custom route).
    var startWarnings: [String] {
        let missing = app.missingPeers
        guard !missing.isEmpty else { return [] }
        return ["no address for \(missing.map { "'\($0)'" }.joined(separator: ", ")), which '\(app.service.name)' calls by default: such requests will get 502; pass --peers \(missing.map { "\($0)=HOST:PORT" }.joined(separator: ",")) or --placement FILE"]
    }

    func respond(to request: Request, on connection: InboundConnection) {
        guard case .admitted(let deadline) = admit(request, on: connection) else { return }
        let name = app.service.name
        // Signed by the app (a hop), a client's (no signature), or refused before any work.
        var client = false
        if let key = context.appKey {
            switch key.check(request.head, service: serviceName) {
            case .app: break
            case .client: client = true
            case .refused(let why):
                return connection.refuse(ServiceFailure(service: name, kind: .badRoute, message: "'\(name)' refused the request: \(why)", status: 403),
                                         counted: name, request: request, context: context)
            }
        }
        let plan: RoutePlan
        let arguments: [PreparedArgument]
        do throws(RouteError) {
            let routeBytes = request.head.valueBytes(of: "dyninka-route")
            let argumentText = request.head.value(of: "dyninka-args")
            if let routeBytes { plan = try app.routePlan(routeBytes) } else { plan = app.defaultPlan }
            if let argumentText {
                let custom = try app.preparedArguments(argumentText)
                arguments = custom.prepared
                try app.checkLimits(plan, arguments: custom.visits)
            } else {
                arguments = try app.defaultArguments.get()
                try plan.withDefaultArguments.get()
            }
            if client, let refusal = app.clientRefusal(plan, arguments: argumentText) {
                return connection.refuse(ServiceFailure(service: name, kind: .badRoute, message: refusal, status: 403),
                                         counted: name, request: request, context: context)
            }
            if context.configuration.fixedRoutes, context.appKey == nil { try app.checkFixed(plan, arguments: argumentText) }
        } catch {
            context.log.debug("refused route: \(error.message)")
            return connection.refuse(ServiceFailure(service: name, kind: .badRoute, message: error.message),
                                     counted: name, request: request, context: context)
        }
        let invocation = Invocation(context: context, app: app, connection: connection, plan: plan, arguments: arguments,
                                    input: request.body, started: request.started, trace: request.trace)
        invocation.deadline = deadline
        invocation.start()
    }
}

/// Gateway mode's function instance: run the service and answer; never forward, whatever the
/// request says. Explicit arguments come with the input in the body, their lengths in
/// Dyninka-Parts.
final class FunctionInstanceResponder: ServiceResponder, Responder {
    init(context: HostContext, app: AppService) {
        super.init(context: context, app: app, name: app.service.name)
    }

    func startLine(address: String) -> String {
        "function instance of '\(app.service.name)' (\(app.table.appName)) on http://\(address); it never forwards"
    }

    func respond(to request: Request, on connection: InboundConnection) {
        guard case .admitted(let deadline) = admit(request, on: connection) else { return }
        let name = app.service.name
        let input: OwnedBytes?
        let arguments: [PreparedArgument]
        if let text = request.head.value(of: "dyninka-parts") {
            let body = request.body ?? .empty
            guard let lengths = AppService.parts(text, count: app.service.parameters.count + 1, total: body.count) else {
                let shown = text.count > 80 ? text.prefix(80) + "..." : Substring(text)
                return connection.refuse(ServiceFailure(
                    service: name, kind: .badInput,
                    message: "Dyninka-Parts '\(shown)' must give \(app.service.parameters.count + 1) byte lengths (input, then each argument) adding up to the body's \(body.count) bytes"),
                    counted: name, request: request, context: context)
            }
            // Sliced, never parsed: each part is a view of the body.
            var slices: [OwnedBytes] = []
            var offset = 0
            for length in lengths {
                slices.append(body[offset..<offset + length])
                offset += length
            }
            input = slices[0]
            arguments = slices.dropFirst().map { .given($0) }
        } else {
            do throws(RouteError) { arguments = try app.defaultArguments.get() } catch {
                return connection.refuse(ServiceFailure(service: name, kind: .badRoute, message: error.message),
                                         counted: name, request: request, context: context)
            }
            input = request.body
        }
        let invocation = Invocation(context: context, app: app, connection: connection, plan: app.defaultPlan, arguments: arguments,
                                    input: input, started: request.started, trace: request.trace)
        invocation.deadline = deadline
        invocation.start()
    }
}

/// The message of a 404 for a POST to a path the service does not serve.
func noSuchPath(_ path: String, service: String) -> String {
    "no such path '\(path)'; POST / runs '\(service)', GET /healthz, /readyz, /metrics"
}
