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
/// - `near`: run it on the same node as that other service (and, with fusion on, in its process).
///
/// Fusion (`dyninka run --fuse auto`, `dyninka deploy --fuse auto`): services that share a node
/// may run in one process, calling each other in process with typed values. A trap in any of
/// them ends that process and every service in it (the runner or the cluster restarts it):
/// - `isolated`: keep this service in a process of its own, never fused.
@attached(peer)
public macro Service(node: String? = nil, label: String? = nil, near: String? = nil, isolated: Bool = false)
    = #externalMacro(module: "DyninkaMacros", type: "ServiceMacro")

/// Places a global variable with a service: its state lives in that service's host. Locally it
/// is kept in locked storage, safe under Swift 6 strict concurrency.
@attached(accessor)
@attached(peer, names: prefixed(_dyninkaPlaced_))
public macro Placed(_ service: String) = #externalMacro(module: "DyninkaMacros", type: "PlacedMacro")
