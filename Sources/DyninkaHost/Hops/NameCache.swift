import DyninkaLoop

/// Addresses of peers given by name (`moving-avg.default.svc.cluster.local:8080`), looked up off
/// the loop and kept for a while, so that a hop costs no lookup: a name is resolved when first
/// needed, again after `ttl` or after a connection to it failed, and lookups of the same name at
/// the same time share one. Loop thread only.
final class NameCache {
    /// One name's addresses; a hop target keeps its entry, so a hop makes no string or hash.
    final class Entry {
        let host: String
        let port: Int
        fileprivate(set) var addresses: [SocketAddress] = []
        /// Monotonic nanoseconds after which the addresses are looked up again; 0: not resolved.
        fileprivate(set) var expires: UInt64 = 0
        /// Callers waiting for the lookup in progress; nil when none is in progress.
        fileprivate var waiting: [(Result<[SocketAddress], LoopError>) -> Void]?

        fileprivate init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
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

    /// The entry of `host:port`, made on first use and shared by everyone asking. At most 1,024
    /// names are kept (an app may fetch URLs made from its input); hop targets keep their own.
    func entry(_ host: String, port: Int) -> Entry {
        let key = "\(host):\(port)"
        if let entry = entries[key] { return entry }
        if entries.count >= 1024 { entries = entries.filter { $0.value.waiting != nil } }
        let entry = Entry(host: host, port: port)
        entries[key] = entry
        return entry
    }

    /// The entry's addresses when they are known and fresh; nil when a lookup is due.
    @inline(__always)
    func fresh(_ entry: Entry) -> [SocketAddress]? {
        !entry.addresses.isEmpty && EventLoop.nanoseconds() < entry.expires ? entry.addresses : nil
    }

    /// Calls `completion` with every address of the entry's name (at once when they are known
    /// and fresh).
    func addresses(of entry: Entry, completion: @escaping (Result<[SocketAddress], LoopError>) -> Void) {
        if !entry.addresses.isEmpty, EventLoop.nanoseconds() < entry.expires {
            return completion(.success(entry.addresses))
        }
        if entry.waiting != nil {
            entry.waiting!.append(completion)
            return
        }
        entry.waiting = [completion]
        lookups += 1
        Resolver.resolveAll(loop: loop, host: entry.host, port: entry.port) { [ttl] result in
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
            for callback in waiting { callback(result) }
        }
    }

    /// Forgets what the entry's name resolved to, so the next hop looks it up again (its
    /// connection failed).
    func invalidate(_ entry: Entry) {
        guard entry.waiting == nil else { return }
        entry.expires = 0
    }
}
