import CDyninkaABI
#if canImport(Glibc)
import Glibc
import DyninkaRoute
#endif

/// An explicit parameter of a service, read from the table.
package struct ServiceParameter: Sendable, Equatable {
    package var label: String
    /// Type name without the Optional mark.
    package var type: String
    package var optional: Bool
    /// The argument main passes, already parsed; nil when main gives none.
    package var defaultArgument: RouteValue?
}

/// One service of a loaded table, in Swift terms. A class: the hop path reads it per request,
/// and copying a struct of this many references would retain each of them every time.
package final class ServiceDescriptor: @unchecked Sendable {
    // Immutable; `entry` is a C function pointer: safe to share.
    package let name: String
    /// Type of the implicit input; nil for a global function (it can only start a chain).
    package let inputType: String?
    package let outputType: String
    package let outputOptional: Bool
    package let isAsync: Bool
    package let isThrowing: Bool
    package let parameters: [ServiceParameter]
    package let placedState: [String]
    package let placement: String
    /// What follows this service in main's chain.
    package let defaultRoute: RouteChain
    let entry: dyninka_entry_fn?
    /// Hash of the @Placed state's declarations ("" without state).
    package let stateHash: String
    let snapshotEntry: (@convention(c) (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?, UnsafeMutablePointer<Int>?) -> Int32)?
    let restoreEntry: (@convention(c) (UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?, UnsafeMutablePointer<Int>?) -> Int32)?
    /// Releases bytes the library returned.
    let freeBytes: (@convention(c) (UnsafeMutablePointer<UInt8>?) -> Void)?

    init(name: String, inputType: String?, outputType: String, outputOptional: Bool, isAsync: Bool, isThrowing: Bool,
         parameters: [ServiceParameter], placedState: [String], placement: String, defaultRoute: RouteChain,
         entry: dyninka_entry_fn?, stateHash: String = "",
         snapshot: (@convention(c) (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?, UnsafeMutablePointer<Int>?) -> Int32)? = nil,
         restore: (@convention(c) (UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?, UnsafeMutablePointer<Int>?) -> Int32)? = nil,
         freeBytes: (@convention(c) (UnsafeMutablePointer<UInt8>?) -> Void)? = nil) {
        self.stateHash = stateHash
        self.snapshotEntry = snapshot
        self.restoreEntry = restore
        self.freeBytes = freeBytes
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

extension ServiceDescriptor {
    /// Whether it owns @Placed state that can be snapshot and restored.
    package var hasState: Bool { snapshotEntry != nil && restoreEntry != nil }

    /// The current values of its @Placed state as one JSON object. Call only while no call of the
    /// service runs. Throws the library's message when a value cannot be encoded.
    package func snapshot() throws(StateTransferError) -> [UInt8] {
        guard let snapshotEntry else { throw StateTransferError(description: "service '\(name)' has no @Placed state") }
        var data: UnsafeMutablePointer<UInt8>?
        var length = 0
        let status = snapshotEntry(&data, &length)
        let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: length)) } ?? []
        if let data { freeBytes?(data) }
        guard status == Int32(DYNINKA_STATUS_OK.rawValue) else {
            throw StateTransferError(description: "service '\(name)': \(String(decoding: bytes, as: UTF8.self))")
        }
        return bytes
    }

    /// Sets its @Placed state from a snapshot; on a mismatch the state stays as it was.
    package func restore(_ bytes: [UInt8]) throws(StateTransferError) {
        guard let restoreEntry else { throw StateTransferError(description: "service '\(name)' has no @Placed state") }
        var message: UnsafeMutablePointer<UInt8>?
        var length = 0
        let status = bytes.withUnsafeBufferPointer { restoreEntry($0.baseAddress, $0.count, &message, &length) }
        let text = message.map { String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self) } ?? ""
        if let message { freeBytes?(message) }
        guard status == Int32(DYNINKA_STATUS_OK.rawValue) else {
            throw StateTransferError(description: "service '\(name)': \(text)")
        }
    }
}

/// Why @Placed state could not be taken or given.
package struct StateTransferError: Error, CustomStringConvertible {
    package var description: String
}

/// Why a table could not be loaded; printed at startup, the process then exits non-zero.
package struct TableLoadError: Error, CustomStringConvertible {
    package var description: String
}

/// A service table loaded from an app library with dlopen.
package final class ServiceTable: @unchecked Sendable {
    // Immutable after init.
    package let path: String
    package let appName: String
    package let entryService: String
    package let services: [ServiceDescriptor]
    private let byName: [String: Int]
    let freeBytes: (@convention(c) (UnsafeMutablePointer<UInt8>?) -> Void)?
    /// Lends the host's loop to the library (ABI 2).
    let attachHost: (@convention(c) (UnsafePointer<dyninka_host>?) -> Void)?
    /// Runs what the library queued for the loop thread.
    let runJobs: (@convention(c) () -> Void)?
    /// Releases a value a fused stage returned (ABI 4).
    let releaseValue: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?

    /// Loads `path` and reads its table, checking the ABI version and every default route.
    package init(path: String) throws(TableLoadError) {
        self.path = path
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown reason"
            throw TableLoadError(description: "cannot load app library '\(path)': \(reason); build it with `dyninka build APP.swift` and pass its path to --app")
        }
        guard let symbol = dlsym(handle, DYNINKA_TABLE_SYMBOL) else {
            throw TableLoadError(description: "'\(path)' does not export \(DYNINKA_TABLE_SYMBOL); is it a library built by `dyninka build`?")
        }
        let function = unsafeBitCast(symbol, to: dyninka_table_fn.self)
        guard let table = function() else {
            throw TableLoadError(description: "\(DYNINKA_TABLE_SYMBOL) in '\(path)' returned no table")
        }
        guard table.pointee.abi_version == DYNINKA_ABI_VERSION else {
            throw TableLoadError(description: "'\(path)' uses service table ABI version \(table.pointee.abi_version) but this dyninka-host speaks version \(DYNINKA_ABI_VERSION); rebuild the app with the same dyninka release")
        }
        guard table.pointee.table_size == UInt32(MemoryLayout<dyninka_table>.size) else {
            throw TableLoadError(description: "'\(path)' has a table of \(table.pointee.table_size) bytes, expected \(MemoryLayout<dyninka_table>.size); rebuild the app with the same dyninka release")
        }
        let parser = RouteParser()
        var services: [ServiceDescriptor] = []
        for i in 0..<table.pointee.service_count {
            let s = table.pointee.services[i]
            let name = String(cString: s.name)
            var parameters: [ServiceParameter] = []
            for p in 0..<s.parameter_count {
                let raw = s.parameters[p]
                let (type, optional) = ServiceTable.splitOptional(String(cString: raw.type))
                var defaultArgument: RouteValue?
                if let text = raw.default_argument {
                    do {
                        let args = try parser.parseArguments(String(cString: text))
                        defaultArgument = args.first?.value
                    } catch {
                        throw TableLoadError(description: "service '\(name)': default argument of '\(String(cString: raw.label))' does not parse: \(error)")
                    }
                }
                parameters.append(ServiceParameter(label: String(cString: raw.label), type: type, optional: optional,
                                                   defaultArgument: defaultArgument))
            }
            let routeText = String(cString: s.default_route)
            let route: RouteChain
            do { route = try parser.parseChain(routeText) } catch {
                throw TableLoadError(description: "service '\(name)': default route '\(routeText)' does not parse: \(error)")
            }
            let input = String(cString: s.input_type)
            services.append(ServiceDescriptor(
                name: name, inputType: input.isEmpty ? nil : input, outputType: String(cString: s.output_type),
                outputOptional: s.output_optional != 0, isAsync: s.is_async != 0, isThrowing: s.is_throwing != 0,
                parameters: parameters,
                placedState: String(cString: s.placed_state).split(separator: ",").map(String.init),
                placement: String(cString: s.placement), defaultRoute: route, entry: s.entry,
                stateHash: s.state_hash.map { String(cString: $0) } ?? "", snapshot: s.snapshot, restore: s.restore,
                freeBytes: table.pointee.free_bytes))
        }
        var byName: [String: Int] = [:]
        for (index, service) in services.enumerated() {
            if byName[service.name] != nil {
                throw TableLoadError(description: "'\(path)' lists service '\(service.name)' twice")
            }
            byName[service.name] = index
        }
        self.appName = String(cString: table.pointee.app_name)
        self.entryService = String(cString: table.pointee.entry_service)
        self.services = services
        self.byName = byName
        self.freeBytes = table.pointee.free_bytes
        self.attachHost = table.pointee.attach_host
        self.runJobs = table.pointee.run_jobs
        self.releaseValue = table.pointee.release_value
        // Every default route must type-check: a broken table fails at startup, not per request.
        let checker = RouteChecker(table: self)
        for service in services {
            do {
                _ = try checker.check(service.defaultRoute, after: service)
                _ = try checker.checkArguments(nil, of: service, allowMissing: true)
            } catch {
                throw TableLoadError(description: "service '\(service.name)': \(error)")
            }
        }
    }

    /// The service named `name`, if the table has it.
    package subscript(name: String) -> ServiceDescriptor? {
        byName[name].map { services[$0] }
    }

    static func splitOptional(_ type: String) -> (String, Bool) {
        type.hasSuffix("?") ? (String(type.dropLast()), true) : (type, false)
    }
}
