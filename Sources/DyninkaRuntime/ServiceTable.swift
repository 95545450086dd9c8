public import CDyninkaABI
#if canImport(Glibc)
import Glibc
#endif

/// One explicit parameter of an exported service.
public struct ParameterExport: Sendable {
    public var label: String
    public var type: String
    /// The argument expression from `main` in route syntax, if main gives one.
    public var defaultArgument: String?

    public init(label: String, type: String, defaultArgument: String? = nil) {
        self.label = label
        self.type = type
        self.defaultArgument = defaultArgument
    }
}

/// Everything the host needs to know about one service, before it is laid out as C.
public struct ServiceExport: Sendable {
    public var name: String
    public var inputType: String
    public var outputType: String
    public var outputOptional: Bool
    public var isAsync: Bool
    public var isThrowing: Bool
    public var parameters: [ParameterExport]
    public var placedState: [String]
    public var placement: String
    public var defaultRoute: String
    public var entry: dyninka_entry_fn
    /// Hash of the @Placed state's declarations ("" without state).
    public var stateHash: String
    /// The state's snapshot and restore entries (nil without state).
    public var snapshot: (@convention(c) (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?, UnsafeMutablePointer<Int>?) -> Int32)?
    public var restore: (@convention(c) (UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?, UnsafeMutablePointer<Int>?) -> Int32)?

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
            run_jobs: { HostLoop.runJobs() })
    }

    /// The table to return from the exported `dyninka_service_table` symbol.
    public var pointer: UnsafeRawPointer { UnsafeRawPointer(table) }
}
