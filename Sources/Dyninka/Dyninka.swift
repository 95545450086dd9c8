// What a Dyninka app imports. The same file runs as an ordinary local program (these macros)
// and, through `dyninka build`, as network services (the compiler writes the glue instead).
@_exported import DyninkaRuntime

/// Marks a function as a service: a global function, or a method in an extension (its receiver
/// is the service's input). Explicit parameters whose arguments in `main` are service calls are
/// dependencies (fan-in); literal arguments are constants of the dataflow. Returning nil drops
/// the item.
@attached(peer)
public macro Service() = #externalMacro(module: "DyninkaMacros", type: "ServiceMacro")

/// Places a global variable with a service: its state lives in that service's host. Locally it
/// is kept in locked storage, safe under Swift 6 strict concurrency.
@attached(accessor)
@attached(peer, names: prefixed(_dyninkaPlaced_))
public macro Placed(_ service: String) = #externalMacro(module: "DyninkaMacros", type: "PlacedMacro")
