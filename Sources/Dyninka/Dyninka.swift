// What a Dyninka app imports. The same file runs as an ordinary local program (these macros)
// and, through `dyninka build`, as network services (the compiler writes the glue instead).
@_exported import DyninkaRuntime

/// Marks a function as a service: a global function, or a method in an extension (its receiver
/// is the service's input). Explicit parameters whose arguments in `main` are service calls are
/// dependencies (fan-in); literal arguments are constants of the dataflow. Returning nil drops
/// the item.
///
/// Placement (used when deploying beyond one machine; ignored locally):
/// - `node`: pin the service to this node (Kubernetes hostname, Marathon hostname).
/// - `label`: run it only on nodes with this label, written "key=value".
/// - `near`: run it on the same node as that other service.
@attached(peer)
public macro Service(node: String? = nil, label: String? = nil, near: String? = nil)
    = #externalMacro(module: "DyninkaMacros", type: "ServiceMacro")

/// Places a global variable with a service: its state lives in that service's host. Locally it
/// is kept in locked storage, safe under Swift 6 strict concurrency.
@attached(accessor)
@attached(peer, names: prefixed(_dyninkaPlaced_))
public macro Placed(_ service: String) = #externalMacro(module: "DyninkaMacros", type: "PlacedMacro")
