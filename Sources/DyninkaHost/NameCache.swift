import DyninkaLoop

/// Addresses of peers given by name (`moving-avg.default.svc.cluster.local:8080`), looked up off
/// the loop and kept for a while, so that a hop costs no lookup: a name is resolved when first
/// needed, again after `ttl` or after a connection to it failed, and lookups of the same name at
/// the same time share one. Loop thread only.
final class NameCache {
    private struct Entry {
        var addresses: [SocketAddress] = []
        /// Monotonic nanoseconds after which the addresses are looked up again; 0: never resolved.
        var expires: UInt64 = 0
        /// Callers waiting for the lookup in progress; nil when none is in progress.
        var waiting: [(Result<[SocketAddress], LoopError>) -> Void]?
    }

    private let loop: EventLoop
    private let ttl: UInt64
    private var entries: [String: Entry] = [:]
    /// Lookups started so far (exposed on /metrics: with a warm cache it stays flat under load).
    private(set) var lookups = 0

    init(loop: EventLoop, ttlMilliseconds: Int) {
        self.loop = loop
        ttl = UInt64(ttlMilliseconds) * 1_000_000
    }

    private static func key(_ host: String, _ port: Int) -> String { "\(host):\(port)" }

    /// Calls `completion` with every address of `host` (at once when they are known and fresh).
    func addresses(of host: String, port: Int, completion: @escaping (Result<[SocketAddress], LoopError>) -> Void) {
        let key = Self.key(host, port)
        var entry = entries[key] ?? Entry()
        if !entry.addresses.isEmpty, EventLoop.nanoseconds() < entry.expires {
            return completion(.success(entry.addresses))
        }
        if entry.waiting != nil {
            entry.waiting!.append(completion)
            entries[key] = entry
            return
        }
        entry.waiting = [completion]
        entries[key] = entry
        lookups += 1
        Resolver.resolveAll(loop: loop, host: host, port: port) { [self] result in
            var entry = entries[key] ?? Entry()
            let waiting = entry.waiting ?? []
            entry.waiting = nil
            switch result {
            case .success(let addresses):
                entry.addresses = addresses
                entry.expires = EventLoop.nanoseconds() + ttl
            case .failure:
                // A failed lookup is not kept: the next hop asks again.
                entry.addresses = []
                entry.expires = 0
            }
            entries[key] = entry
            for callback in waiting { callback(result) }
        }
    }

    /// Forgets what `host` resolved to, so the next hop looks it up again (its connection failed).
    func invalidate(_ host: String, port: Int) {
        let key = Self.key(host, port)
        guard var entry = entries[key], entry.waiting == nil else { return }
        entry.expires = 0
        entries[key] = entry
    }
}
