public import CDyninkaABI
#if canImport(Glibc)
import Glibc
#endif

/// One explicit parameter of an exported service.
public struct ParameterExport: Sendable {
    /// The argument label as written at the call site ("_" when unlabeled).
    public var label: String
    /// The Swift type name; a trailing "?" marks an Optional.
    public var type: String
    /// The argument expression from `main` in route syntax, if main gives one.
    public var defaultArgument: String?

    /// A parameter with its label, type and, if main gives one, its argument expression.
    public init(label: String, type: String, defaultArgument: String? = nil) {
        self.label = label
        self.type = type
        self.defaultArgument = defaultArgument
    }
}

/// Everything the host needs to know about one service, before it is laid out as C.
public struct ServiceExport: Sendable {
    /// The service's name: the function's name, as routes call it.
    public var name: String
    /// The type of the implicit input (the extended type), or "" for a global function.
    public var inputType: String
    /// The type of the output, without the Optional mark.
    public var outputType: String
    /// Whether the function returns an Optional (nil drops the item: HTTP 204).
    public var outputOptional: Bool
    /// Whether the function is `async` (it runs as a task and completes later).
    public var isAsync: Bool
    /// Whether the function `throws` (a thrown error answers 500 `function`).
    public var isThrowing: Bool
    /// The explicit parameters, in declaration order.
    public var parameters: [ParameterExport]
    /// The names of the @Placed variables the service owns.
    public var placedState: [String]
    /// The placement constraint for deployment ("" for none), for example "node=edge-1".
    public var placement: String
    /// What follows the service in main's chain, in route syntax ("" when it ends the chain).
    public var defaultRoute: String
    /// The C entry the host calls for each invocation.
    public var entry: dyninka_entry_fn
    /// Hash of the @Placed state's declarations ("" without state).
    public var stateHash: String
    /// Writes the @Placed state as one JSON object (nil without state).
    public var snapshot: (@convention(c) (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?, UnsafeMutablePointer<Int>?) -> Int32)?
    /// Sets the @Placed state from a snapshot's JSON, every value checked (nil without state).
    public var restore: (@convention(c) (UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?, UnsafeMutablePointer<Int>?) -> Int32)?

    /// A service as the generated glue describes it; every field but the name, the output type
    /// and the entry defaults to "none".
    public init(name: String, inputType: String = "", outputType: String, outputOptional: Bool = false,
                isAsync: Bool = false, isThrowing: Bool = false, parameters: [ParameterExport] = [],
                placedState: [String] = [], placement: String = "", defaultRoute: String = "",
                entry: dyninka_entry_fn, stateHash: String = "",
                snapshot: (@convention(c) (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?, UnsafeMutablePointer<Int>?) -> Int32)? = nil,
                restore: (@convention(c) (UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?, UnsafeMutablePointer<Int>?) -> Int32)? = nil) {
        self.stateHash = stateHash
        self.snapshot = snapshot
        self.restore = restore
        self.name = name
        self.inputType = inputType
        self.outputType = outputType
        self.outputOptional = outputOptional
        self.isAsync = isAsync
        self.isThrowing = isThrowing
        self.parameters = parameters
        self.placedState = placedState
        self.placement = placement
        self.defaultRoute = defaultRoute
        self.entry = entry
    }
}

/// The C service table of an app library, laid out once and kept for the life of the process.
///
/// An app library holds one in a global and returns `pointer` from its exported
/// `dyninka_service_table` function.
public final class ServiceTable: @unchecked Sendable {
    // Immutable after init; the C memory is never freed because the host may read it until exit.
    private let table: UnsafeMutablePointer<dyninka_table>

    /// Lays out the table of app `appName` in C memory that is never freed; `entryService` is the
    /// first service of main's chain.
    public init(appName: String, entryService: String, services: [ServiceExport]) {
        let cServices = UnsafeMutablePointer<dyninka_service>.allocate(capacity: max(services.count, 1))
        for (index, service) in services.enumerated() {
            let parameters = UnsafeMutablePointer<dyninka_parameter>.allocate(capacity: max(service.parameters.count, 1))
            for (p, parameter) in service.parameters.enumerated() {
                parameters[p] = dyninka_parameter(label: strdup(parameter.label), type: strdup(parameter.type),
                                                  default_argument: parameter.defaultArgument.map { UnsafePointer(strdup($0)!) })
            }
            cServices[index] = dyninka_service(
                name: strdup(service.name), input_type: strdup(service.inputType),
                output_type: strdup(service.outputType), output_optional: service.outputOptional ? 1 : 0,
                is_async: service.isAsync ? 1 : 0, is_throwing: service.isThrowing ? 1 : 0,
                parameters: parameters, parameter_count: service.parameters.count,
                placed_state: strdup(service.placedState.joined(separator: ",")),
                placement: strdup(service.placement), default_route: strdup(service.defaultRoute),
                entry: service.entry, state_hash: strdup(service.stateHash),
                snapshot: service.snapshot, restore: service.restore)
        }
        table = .allocate(capacity: 1)
        table.pointee = dyninka_table(
            abi_version: DYNINKA_ABI_VERSION, table_size: UInt32(MemoryLayout<dyninka_table>.size),
            app_name: strdup(appName), entry_service: strdup(entryService),
            services: cServices, service_count: services.count,
            free_bytes: { free($0) },
            attach_host: { HostLoop.attach($0) },
            run_jobs: { HostLoop.runJobs() },
            release_value: { value in if let value { Unmanaged<AnyObject>.fromOpaque(value).release() } })
    }

    /// The table to return from the exported `dyninka_service_table` symbol.
    public var pointer: UnsafeRawPointer { UnsafeRawPointer(table) }
}
