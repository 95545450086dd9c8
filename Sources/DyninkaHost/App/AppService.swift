import DyninkaHTTP
import DyninkaRoute
#if canImport(Glibc)
import Glibc
#endif

/// The service a host runs, checked once at start: its table entry, its default route and
/// arguments from main, and the planning of the routes and arguments requests bring (checked,
/// prepared and cached). The point-to-point, function-instance and orchestrator roles share it.
final class AppService {
    let table: ServiceTable
    let service: ServiceDescriptor
    let configuration: HostConfiguration
    let checker: RouteChecker
    private let parser = RouteParser()
    /// What follows this service in main's chain (replaced by `setDefaults` when main changes).
    private(set) var defaultRoute: CheckedRoute
    /// Arguments from main; a failure when main gives none (then a caller must send Dyninka-Args).
    private(set) var defaultPlans: Result<[ArgumentPlan], RouteError>
    private(set) var defaultArguments: Result<[PreparedArgument], RouteError> = .success([])
    /// The default route's plan (made once).
    private(set) var defaultPlan: RoutePlan
    /// Prepared routes by header text: under load the same few routes repeat.
    private var routeCache: [String: Result<RoutePlan, RouteError>] = [:]
    private var argumentCache: [String: Result<(prepared: [PreparedArgument], visits: [String: Int]), RouteError>] = [:]

    /// Checks `name` in `table`; `forwards` false: the service never forwards (a function
    /// instance), so its route is empty whatever the table says.
    init(table: ServiceTable, name: String, configuration: HostConfiguration, forwards: Bool) throws(HostStartupError) {
        guard let service = table[name] else {
            throw HostStartupError("service '\(name)' is not in \(table.path); it has \(table.services.map(\.name).joined(separator: ", "))")
        }
        self.table = table
        self.service = service
        self.configuration = configuration
        checker = RouteChecker(table: table, maxHops: configuration.maxHops)
        do {
            defaultRoute = forwards ? try checker.check(service.defaultRoute, after: service)
                                    : CheckedRoute(chain: RouteChain(calls: []), steps: [])
        } catch {
            throw HostStartupError("default route of '\(service.name)' is invalid: \(error)")
        }
        do {
            defaultPlans = .success(try checker.checkArguments(nil, of: service))
        } catch {
            defaultPlans = .failure(error)
        }
        isPublic = configuration.publicService ?? (name == table.entryService)
        var allowed: [RouteChain] = []
        for text in configuration.allowedRoutes {
            do throws(RouteError) {
                allowed.append(try checker.check(try RouteParser().parseChain(text), after: service).chain)
            } catch {
                throw HostStartupError("--allow-route '\(text)' does not fit '\(service.name)': \(error.message)")
            }
        }
        allowedRoutes = allowed
        // A placeholder until the plan below is made (it needs the checks above).
        defaultPlan = RoutePlan(route: defaultRoute, next: nil, visits: [:])
        defaultPlan = plan(defaultRoute)
        defaultArguments = defaultPlans.map(prepare)
    }

    /// The service's metrics series, found once by the responder that runs it (a fused host
    /// records several services per request; a lookup by name each time showed in the profile).
    var series: Metrics.PerService?

    /// With an app key: whether a client (an unsigned request) may run main's chain here.
    let isPublic: Bool
    /// With an app key: routes a client may also send here (--allow-route).
    let allowedRoutes: [RouteChain]

    /// Why a client's request (no app signature) may not run here; nil when it may: main's route
    /// and arguments at a public service, or a route the operator allowed with main's arguments.
    func clientRefusal(_ plan: RoutePlan, arguments: String?) -> String? {
        let mainArguments = arguments == nil || (try? checkFixed(defaultPlan, arguments: arguments)) != nil
        if mainArguments, allowedRoutes.contains(plan.route.chain) { return nil }
        guard isPublic else {
            return "'\(service.name)' takes requests only from its app's own services (signed with the app key); clients start at '\(table.entryService)'"
                + " (to let clients in here, start it with --public, or allow a route with --allow-route)"
        }
        guard (try? checkFixed(plan, arguments: arguments)) != nil else {
            let allowed = allowedRoutes.isEmpty ? "" : " or \(allowedRoutes.map { "'\($0.source)'" }.joined(separator: ", "))"
            return "a client may run only main's dataflow here ('\(defaultRoute.chain.source)'\(allowed)) with main's arguments; other routes are for the app's own hops (signed with the app key)"
        }
        return nil
    }

    /// Replaces the default route and arguments (main's chain changed while the host runs):
    /// `route` in route syntax, `arguments` in Dyninka-Args syntax (nil: the table's). Checked
    /// against this host's table first; on an error nothing changes.
    func setDefaults(route: String, arguments: String?) throws(RouteError) {
        let checked = try checker.check(try parser.parseChain(route), after: service)
        let plans = try checker.checkArguments(try arguments.map { text throws(RouteError) in try parser.parseArguments(text) }, of: service)
        defaultRoute = checked
        defaultPlans = .success(plans)
        defaultPlan = plan(checked)
        defaultArguments = .success(prepare(plans))
    }

    /// Services the default route (and main's arguments) call that have no address here and
    /// are not served by this process.
    var missingPeers: [String] {
        Self.servicesCalled(by: defaultRoute, plans: (try? defaultPlans.get()) ?? [])
            .filter { configuration.peers.address(of: $0) == nil && !configuration.services.contains($0) }.sorted()
    }

    static func servicesCalled(by route: CheckedRoute, plans: [ArgumentPlan]) -> Set<String> {
        var names = Set<String>()
        func visit(_ plans: [ArgumentPlan]) {
            for case .chain(let chain, _) in plans { names.formUnion(servicesCalled(by: chain, plans: [])) }
        }
        visit(plans)
        for step in route.steps {
            names.insert(step.service.name)
            visit(step.arguments)
        }
        return names
    }

    /// The byte lengths of a Dyninka-Parts value: exactly `count` whole numbers, each within the
    /// body, adding up to `total`; nil otherwise. The count is checked before anything is summed,
    /// and the sum can never overflow.
    static func parts(_ text: String, count: Int, total: Int) -> [Int]? {
        let items = text.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        guard items.count == count else { return nil }
        var lengths: [Int] = []
        lengths.reserveCapacity(count)
        var sum = 0
        for item in items {
            let digits = item.drop { $0 == 32 }.reversed().drop { $0 == 32 }
            guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ (48...57).contains($0) }) else { return nil }
            let length = digits.reversed().reduce(0) { $0 * 10 + Int($1 - 48) }
            sum += length
            guard length <= total, sum <= total else { return nil }
            lengths.append(length)
        }
        return sum == total ? lengths : nil
    }

    /// The next hop of `route` (which follows this service), prepared, with the services it
    /// visits counted (this one included) and checked together with main's arguments.
    func plan(_ route: CheckedRoute) -> RoutePlan {
        var visits = [service.name: 1]
        Self.countVisits(route, into: &visits)
        let plan = RoutePlan(route: route, next: route.steps.first.map { target($0, rest: route.chain.rest) }, visits: visits)
        var defaults: [String: Int] = [:]
        if case .success(let plans) = defaultPlans { Self.countVisits(plans, into: &defaults) }
        do throws(RouteError) { try checkLimits(plan, arguments: defaults) } catch { plan.withDefaultArguments = .failure(error) }
        return plan
    }

    static func countVisits(_ route: CheckedRoute, into visits: inout [String: Int]) {
        for step in route.steps {
            visits[step.service.name, default: 0] += 1
            countVisits(step.arguments, into: &visits)
        }
    }

    static func countVisits(_ plans: [ArgumentPlan], into visits: inout [String: Int]) {
        for case .chain(let chain, _) in plans { countVisits(chain, into: &visits) }
    }

    /// The limits on one request: --max-hops service calls in all (route and arguments together)
    /// and --max-visits calls of any one service, this one included, so that no request holds
    /// more than a few of a host's in-flight slots.
    /// Nothing is copied or allocated: the plan knows its own counts, the arguments add theirs.
    func checkLimits(_ plan: RoutePlan, arguments: [String: Int]) throws(RouteError) {
        var calls = plan.calls
        var most = plan.mostVisited
        for (name, count) in arguments {
            calls += count
            let total = (plan.visits[name] ?? 0) + count
            if total > most.count { most = (name, total) }
        }
        guard calls <= configuration.maxHops else {
            throw RouteError("the route and the arguments make \(calls) service calls together; the limit is \(configuration.maxHops) (--max-hops)")
        }
        if most.count > configuration.maxVisits {
            throw RouteError("the request would run '\(most.name)' \(most.count) times; a request may run a service at most \(configuration.maxVisits) times (--max-visits)")
        }
    }

    /// With --fixed-routes: only the route and arguments of main's dataflow (what this service's
    /// callers send) are accepted.
    func checkFixed(_ plan: RoutePlan, arguments: String?) throws(RouteError) {
        guard plan === defaultPlan || plan.route.chain == defaultRoute.chain else {
            throw RouteError("'\(service.name)' takes only the route of main's dataflow ('\(defaultRoute.chain.source)'); custom routes are turned off here (--fixed-routes)")
        }
        if let arguments {
            let given = try parser.parseArguments(arguments)
            let main = service.parameters.compactMap { p in p.defaultArgument.map { RouteArgument(label: p.label, value: $0) } }
            guard given == main else {
                throw RouteError("'\(service.name)' takes only main's arguments; custom arguments are turned off here (--fixed-routes)")
            }
        }
    }

    private func target(_ step: CheckedStep, rest: RouteChain) -> HopTarget {
        HopTarget(service: step.service.name, address: configuration.peers.address(of: step.service.name),
                  route: rest.source, arguments: step.call.argumentsSource)
    }

    func prepare(_ plans: [ArgumentPlan]) -> [PreparedArgument] {
        plans.map { plan in
            switch plan {
            case .constant(let json):
                let bytes = ByteStore(capacity: json.utf8.count)
                bytes.append(string: json)
                return .constant(bytes)
            case .chain(let chain, let optional):
                return .dependency(target(chain.steps[0], rest: chain.chain.rest), optional: optional)
            }
        }
    }

    /// The last Dyninka-Route value planned, as bytes, and its plan: most traffic repeats one
    /// route, and comparing bytes costs less than making a String of them and hashing it.
    private let lastRoute = ByteStore(capacity: 128)
    private var lastRoutePlan: RoutePlan?

    func routePlan(_ bytes: UnsafeRawBufferPointer) throws(RouteError) -> RoutePlan {
        if let lastRoutePlan, bytes.count == lastRoute.count,
           bytes.count == 0 || memcmp(bytes.baseAddress!, lastRoute.base!, bytes.count) == 0 {
            return lastRoutePlan
        }
        let plan = try routePlan(String(decoding: bytes, as: UTF8.self))
        lastRoute.removeAll()
        lastRoute.append(bytes)
        lastRoutePlan = plan
        return plan
    }

    /// The plan of a route given as text (cached by text).
    func routePlan(_ text: String) throws(RouteError) -> RoutePlan {
        if let cached = routeCache[text] { return try cached.get() }
        let result: Result<RoutePlan, RouteError>
        do throws(RouteError) { result = .success(plan(try checker.check(try parser.parseChain(text), after: service))) } catch { result = .failure(error) }
        if routeCache.count >= 256 { routeCache.removeAll(keepingCapacity: true) }
        routeCache[text] = result
        return try result.get()
    }

    /// Dyninka-Args checked and prepared, with the services its dependencies visit.
    func preparedArguments(_ text: String) throws(RouteError) -> (prepared: [PreparedArgument], visits: [String: Int]) {
        if let cached = argumentCache[text] { return try cached.get() }
        let result: Result<(prepared: [PreparedArgument], visits: [String: Int]), RouteError>
        do throws(RouteError) {
            let arguments = try parser.parseArguments(text)
            let hops = arguments.reduce(0) { total, arg in
                if case .chain(let chain) = arg.value { return total + chain.callCount }
                return total
            }
            guard hops <= configuration.maxHops else {
                throw RouteError("arguments make \(hops) service calls; the limit is \(configuration.maxHops) (--max-hops)")
            }
            let plans = try checker.checkArguments(arguments, of: service)
            var visits: [String: Int] = [:]
            Self.countVisits(plans, into: &visits)
            result = .success((prepare(plans), visits))
        } catch { result = .failure(error) }
        if argumentCache.count >= 256 { argumentCache.removeAll(keepingCapacity: true) }
        argumentCache[text] = result
        return try result.get()
    }

    /// What GET / answers: the app, the service, its types and its default route, as JSON.
    func describe() -> String {
        let parameters = service.parameters.map { "{\"label\":\(JSONText.quote($0.label)),\"type\":\(JSONText.quote($0.type + ($0.optional ? "?" : "")))}" }
        return "{\"app\":\(JSONText.quote(table.appName)),\"service\":\(JSONText.quote(service.name)),"
            + "\"input\":\(service.inputType.map(JSONText.quote) ?? "null"),"
            + "\"output\":\(JSONText.quote(service.outputType + (service.outputOptional ? "?" : ""))),"
            + "\"parameters\":[\(parameters.joined(separator: ","))],"
            + "\"defaultRoute\":\(JSONText.quote(defaultRoute.chain.source))}\n"
    }
}
