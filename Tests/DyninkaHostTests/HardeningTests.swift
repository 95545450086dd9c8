import DyninkaRoute
import Foundation
import Testing
@testable import DyninkaHost
#if canImport(Glibc)
import Glibc
#endif

/// Resident memory of a process, in KiB (from /proc).
func residentKiB(_ pid: Int32) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
}

/// User plus system CPU time of a process, in clock ticks (from /proc).
func cpuTicks(_ pid: Int32) -> Int {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return 0 }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    return (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
}

/// The value of one metric line (`name{labels} value`) on /metrics; nil when absent.
func metric(_ host: HostProcess, _ series: String) throws -> Double? {
    let text = try host.client.get("/metrics").text
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(series + " ") }) else { return nil }
    return Double(line.split(separator: " ").last ?? "")
}

/// Units of the request checks that do not need a process.
@Suite struct RequestLimitUnitTests {
    @Test func deadlinesAreDigitsOnceAndCutToADay() throws {
        let started: UInt64 = 5_000_000_000
        #expect(try Deadline.parse(["250"], from: started).get().nanoseconds == started + 250_000_000)
        #expect(try Deadline.parse(["  250\t"], from: started).get().nanoseconds == started + 250_000_000)
        let day = UInt64(Deadline.longest) * 1_000_000
        // Values that overflowed UInt64 (and ones that went negative as Int64) are cut to a day.
        for huge in ["99999999999999", "9300000000000", "18000000000000", String(repeating: "9", count: 400)] {
            #expect(try Deadline.parse([huge], from: started).get().nanoseconds == started + day, "\(huge)")
        }
        for bad in ["-5", "soon", "", "  ", "1 2", "+3", "3.5", "１２", "0x10"] {
            #expect(throws: RouteError.self, "\(bad)") { try Deadline.parse([bad], from: started).get() }
        }
        #expect(throws: RouteError.self) { try Deadline.parse(["10", "20"], from: started).get() }
    }

    @Test func partsAreCheckedBeforeTheyAreSummed() {
        #expect(AppService.parts("3,4", count: 2, total: 7) == [3, 4])
        #expect(AppService.parts(" 3 , 4 ", count: 2, total: 7) == [3, 4])
        #expect(AppService.parts("0,7", count: 2, total: 7) == [0, 7])
        #expect(AppService.parts("9223372036854775807,9223372036854775807", count: 2, total: 7) == nil)
        #expect(AppService.parts("99999999999999999999,1", count: 2, total: 7) == nil)
        #expect(AppService.parts("3,4,0", count: 2, total: 7) == nil, "count checked first")
        #expect(AppService.parts("3", count: 2, total: 7) == nil)
        #expect(AppService.parts("3,", count: 2, total: 7) == nil)
        #expect(AppService.parts("-1,8", count: 2, total: 7) == nil)
        #expect(AppService.parts("2,4", count: 2, total: 7) == nil, "must add up to the body")
        #expect(AppService.parts(String(repeating: "1,", count: 100_000) + "1", count: 2, total: 7) == nil)
    }

    @Test func labelValuesAreEscaped() {
        #expect(Metrics.escape("map") == "map")
        #expect(Metrics.escape(#"a"b\c"# + "\nd") == #"a\"b\\c\nd"#)
    }
}

/// Hostile requests: each gets its documented answer, the host keeps serving. The tests that
/// take a `HostMode` run in process first, then against a real process.
@Suite(.serialized) struct HardeningTests {
    @Test(arguments: HostMode.allCases)
    func deadlineHeadersOutOfRangeNeverKillTheHost(mode: HostMode) throws {
        let host = try mode.start("map")
        for huge in ["99999999999999", "9300000000000", "18446744073709551615", String(repeating: "9", count: 300)] {
            let answer = try host.post(temperature, route: "", extra: [("Dyninka-Deadline", huge)])
            #expect(answer.status == 200, "\(huge): \(answer)")
        }
        for bad in ["-1", "soon", "1 2", "", "\u{e9}"] {
            let answer = try host.post(temperature, route: "", extra: [("Dyninka-Deadline", bad)])
            #expect(answer.status == 400, "'\(bad)': \(answer)")
            #expect(answer.error?.kind == "bad-input")
            #expect(answer.headers["server-timing"]?.hasPrefix("map;dur=") == true, "\(answer.headers)")
        }
        let twice = try host.post(temperature, route: "", extra: [("Dyninka-Deadline", "100"), ("Dyninka-Deadline", "200")])
        #expect(twice.status == 400)
        #expect(host.isRunning)
        #expect(try host.post(temperature, route: "").status == 200)
    }

    @Test func partsThatOverflowAreRefused() throws {
        let topology = try GatewayTopology(["map"])
        let function = topology.functions["map"]!
        for parts in ["9223372036854775807,9223372036854775807", "9223372036854775807", "1,2,3", "-5", ""] {
            let answer = try function.client.post(temperature, extra: [("Dyninka-Parts", parts)])
            #expect(answer.status == 400, "'\(parts)': \(answer)")
            #expect(answer.error?.kind == "bad-input")
        }
        #expect(function.process.isRunning)
        let good = try function.client.post(temperature, extra: [("Dyninka-Parts", String(temperature.utf8.count))])
        #expect(good.status == 200, "\(good)")
        // The budget the gateway passes on applies to a function instance too.
        let late = try function.client.post(temperature, extra: [("Dyninka-Parts", String(temperature.utf8.count)),
                                                                 ("Dyninka-Deadline", "0")])
        #expect(late.status == 504, "\(late)")
        #expect(late.error?.kind == "timeout")
    }

    @Test func pipelinedRequestsAreAnsweredInALoopWithBoundedMemory() throws {
        let host = try HostProcess(service: "slow")
        let client = host.client
        let fd = try client.connect()
        defer { close(fd) }
        let before = residentKiB(host.process.processIdentifier)
        let post = "POST / HTTP/1.1\r\nDyninka-Route: \r\nDyninka-Args: ms: 1500\r\nContent-Length: \(temperature.utf8.count)\r\n\r\n\(temperature)"
        let gets = String(repeating: "GET /healthz HTTP/1.1\r\n\r\n", count: 7_000)
        // The reader runs beside the writer: the host stops reading beyond its bound, so the
        // client must read for the host to go on.
        let reader = ResponseCounter(fd: fd, expected: 7_001)
        let thread = Thread { reader.run() }
        thread.start()
        try client.send(fd, Array((post + gets).utf8))
        let peak = reader.wait(timeout: 30, pid: host.process.processIdentifier)
        #expect(reader.responses == 7_001, "\(reader.responses) responses")
        #expect(reader.firstStatus == 200)
        #expect(host.process.isRunning)
        #expect(peak - before < 16 * 1024, "RSS grew from \(before) to \(peak) KiB")
        #expect(try client.get("/healthz").status == 200)
    }

    @Test func clientsThatDoNotReadAreClosedAndFreeTheirSlot() throws {
        let host = try HostProcess(service: "blob", arguments: ["--write-timeout", "400", "--max-in-flight", "1"])
        let big = #"{"size":8000000}"#
        let request = "POST / HTTP/1.1\r\nConnection: close\r\nDyninka-Route: \r\nContent-Length: \(big.utf8.count)\r\n\r\n\(big)"
        let fd = try host.client.connect()
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        try host.client.send(fd, Array(request.utf8))
        usleep(150_000)
        // The response is still being written to a client that reads nothing: its slot is taken.
        let busy = try host.client.post(#"{"size":20}"#, route: "")
        #expect(busy.status == 503, "\(busy)")
        #expect(busy.error?.kind == "overloaded")
        #expect(try metric(host, "dyninka_buffered_bytes") ?? 0 > 1_000_000)
        usleep(600_000)
        #expect(try metric(host, "dyninka_write_timeouts_total") == 1)
        #expect(try metric(host, "dyninka_buffered_bytes") == 0)
        #expect(try host.client.post(#"{"size":20}"#, route: "").status == 200)
        close(fd)
    }

    /// A host out of file descriptors sheds the connections it cannot take (the listener falls
    /// back to libuv's reserve-descriptor trick), does not spin on its listener while the limit
    /// holds, and answers again as soon as descriptors are free.
    @Test func runningOutOfDescriptorsShedsConnectionsWithoutSpinning() throws {
        let host = try HostProcess(service: "map", arguments: ["--request-timeout", "30000"])
        let pid = host.process.processIdentifier
        let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
        try command(["prlimit", "--pid", String(pid), "--nofile=\(open + 4):\(open + 4)"])
        // Each client sends the start of a head and waits: the host holds a descriptor for it.
        var clients: [Int32] = []
        for _ in 0..<12 {
            let fd = try host.client.connect()
            try host.client.send(fd, Array("POST / HTTP/1.1\r\n".utf8))
            clients.append(fd)
        }
        usleep(300_000)
        let before = cpuTicks(pid)
        usleep(500_000)
        let spent = cpuTicks(pid) - before
        #expect(spent < 15, "the host burned \(spent) ticks in 0.5 s while out of descriptors")
        let shed = clients.filter { fd in
            var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            var byte: UInt8 = 0
            return poll(&pollfd, 1, 0) == 1 && recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) <= 0
        }.count
        #expect(shed > 0 && shed < clients.count, "\(shed) of \(clients.count) connections shed")
        #expect(host.process.isRunning)
        let errors = host.standardError()
        #expect(errors.contains("cannot accept a connection") && errors.contains("ulimit -n"), "\(errors)")
        for fd in clients { close(fd) }
        usleep(200_000)
        #expect(try host.client.post(temperature, route: "").status == 200, "answers once descriptors are free")
    }

    @Test(arguments: HostMode.allCases)
    func bodiesBeyondTheHostWideBoundAreRefused(mode: HostMode) throws {
        let host = try mode.start("echo", flags: ["--max-buffered-bytes", "65536"])
        let declared = "POST / HTTP/1.1\r\nDyninka-Route: \r\nContent-Length: 100000\r\n\r\n{"
        let refused = try host.exchange(Array(declared.utf8))
        #expect(refused.status == 503, "\(refused)")
        #expect(refused.headers["retry-after"] == "1")
        #expect(refused.error?.message.contains("--max-buffered-bytes") == true)
        #expect(refused.error?.message.contains("limit 65536") == true)
        // A refusal of the service: Server-Timing names it, as on every other refusal.
        #expect(refused.headers["server-timing"]?.hasPrefix("echo;dur=") == true, "\(refused.headers)")
        let chunk = String(repeating: "x", count: 40_000)
        let chunked = "POST / HTTP/1.1\r\nDyninka-Route: \r\nTransfer-Encoding: chunked\r\n\r\n"
            + "\(String(40_002, radix: 16))\r\n\"\(chunk)\"\r\n" + "\(String(40_000, radix: 16))\r\n\(chunk)\r\n0\r\n\r\n"
        #expect(try host.exchange(Array(chunked.utf8)).status == 503)
        #expect(try host.metric("dyninka_buffered_bytes") == 0)
        #expect(try host.post(#"{"fits":true}"#, route: "").status == 200)
    }

    @Test func revisitingRoutesCannotTakeEveryInFlightSlot() throws {
        let port = freePort()
        let host = try HostProcess(service: "slow", peers: ["slow": port], port: port)
        let client = host.client
        func route(visits: Int) -> String {
            (Array(repeating: "slow(ms: 0)", count: visits - 2) + ["slow(ms: 2500)"]).joined(separator: ".")
        }
        func hostile(visits: Int) -> String {
            "POST / HTTP/1.1\r\nConnection: close\r\nDyninka-Args: ms: 0\r\nDyninka-Route: \(route(visits: visits))\r\nContent-Length: \(temperature.utf8.count)\r\n\r\n\(temperature)"
        }
        // 50 requests that would run 'slow' 12 times each (600 slots, more than the 512 there are).
        let refused = try (0..<50).map { _ in try client.exchange(Array(hostile(visits: 12).utf8)) }
        #expect(refused.allSatisfy { $0.status == 400 && $0.error?.kind == "bad-route" }, "\(refused[0])")
        #expect(refused[0].error?.message.contains("at most 4 times") == true, "\(refused[0])")
        // 50 requests within the limit (4 visits each) hold 200 slots: a normal client still gets in.
        let open = try (0..<50).map { _ in
            let fd = try client.connect()
            try client.send(fd, Array(hostile(visits: 4).utf8))
            return fd
        }
        usleep(300_000)
        let normal = try client.post(temperature, route: "", arguments: "ms: 1")
        #expect(normal.status == 200, "\(normal)")
        #expect(try metric(host, "dyninka_in_flight_requests") ?? 0 >= 150)
        for fd in open {
            #expect(try client.readResponse(fd).status == 200)
            close(fd)
        }
    }

    @Test(arguments: HostMode.allCases)
    func maxHopsCountsTheRouteAndTheArgumentsTogether(mode: HostMode) throws {
        let cluster = try HostCluster(["weather", "echo"])
        let alert = try mode.start("alert", peers: ["weather": cluster["weather"].port, "echo": cluster["echo"].port],
                                   flags: ["--max-hops", "2"])
        let average = #"{"average":20,"count":1}"#
        // Two calls in the route and one in the arguments: each alone is within 2, together not.
        let over = try alert.post(average, route: "echo().echo()", arguments: "conditions: weather()")
        #expect(over.status == 400, "\(over)")
        #expect(over.error?.message.contains("make 3 service calls together") == true, "\(over)")
        let within = try alert.post(average, route: "echo()", arguments: "conditions: weather()")
        #expect(within.status == 200, "\(within)")
    }

    @Test(arguments: HostMode.allCases)
    func aFailedDependencyStopsTheRequest(mode: HostMode) throws {
        // No address for weather: the dependency fails before the function could run.
        let alert = try mode.start("alert")
        let answer = try alert.post(#"{"average":20,"count":1}"#, route: "")
        #expect(answer.status == 502)
        #expect(answer.error?.service == "weather")
        usleep(100_000)
        #expect(try alert.metric(#"dyninka_function_duration_seconds_count{service="alert"}"#) == 0)
    }

    @Test(arguments: HostMode.allCases)
    func headGetsTheHeadWithoutTheBody(mode: HostMode) throws {
        let host = try mode.start("map")
        let head = try host.exchange(Array("HEAD /healthz HTTP/1.1\r\nConnection: close\r\n\r\n".utf8))
        #expect(head.status == 200)
        #expect(head.headers["content-length"] == "3")
        #expect(head.body.isEmpty)
        let describe = try host.exchange(Array("HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n".utf8))
        #expect(describe.status == 200)
        #expect(describe.body.isEmpty)
        #expect(Int(describe.headers["content-length"] ?? "") ?? 0 > 10)
    }

    @Test(arguments: HostMode.allCases)
    func gatewayMetricsOnlyNameKnownFunctions(mode: HostMode) throws {
        let function = try HostMode.process.startFunction("map") as! HostProcess
        let gateway = try mode.startGateway(functions: ["map": function.port])
        for name in [#"x"}"#, "evil\\", "a%22b", "nope"] {
            #expect(try gateway.post(temperature, path: "/function/\(name)").status == 404)
        }
        #expect(try gateway.post(temperature, path: "/function/map", extra: [("Dyninka-Parts", String(temperature.utf8.count))]).status == 200)
        let metrics = try gateway.get("/metrics").text
        #expect(!metrics.contains("nope"))
        #expect(!metrics.contains("evil"))
        #expect(!metrics.contains(#"x"}"#))
        // Every sample line still parses: name{labels} value.
        for line in metrics.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.range(of: #"^[a-z_]+(\{[a-z_]+="[^"\\]*"(,[a-z_]+="[^"\\]*")*\})? [0-9.e+-]+$"#, options: .regularExpression) != nil,
                    "\(line)")
        }
    }

    @Test(arguments: HostMode.allCases)
    func fixedRoutesAcceptOnlyMainsDataflow(mode: HostMode) throws {
        let cluster = try HostCluster(["movingAvg"])
        let map = try mode.start("map", peers: ["movingAvg": cluster["movingAvg"].port], flags: ["--fixed-routes"])
        #expect(try map.post(temperature).status == 200)
        #expect(try map.post(temperature, route: "movingAvg()").status == 200, "what filterTemperature sends")
        let custom = try map.post(temperature, route: "")
        #expect(custom.status == 400)
        #expect(custom.error?.message.contains("--fixed-routes") == true)
        #expect(try map.post(temperature, route: "movingAvg()", arguments: "x: 1").status == 400)
    }

    @Test(arguments: HostMode.allCases)
    func fixedRoutesKeepMainsArgumentsToo(mode: HostMode) throws {
        // alert's argument in main is the dependency `conditions: weather()`: a client may send
        // that, but not another dependency in its place.
        let cluster = try HostCluster(["echo", "weather"])
        let peers = ["echo": cluster["echo"].port, "weather": cluster["weather"].port]
        let alert = try mode.start("alert", peers: peers, flags: ["--fixed-routes"])
        let average = #"{"average":20,"count":1}"#
        let mains = try alert.post(average, route: "", arguments: "conditions: weather()")
        #expect(mains.status == 200 && mains.json()?["condition"] as? String != nil, "\(mains)")
        let custom = try alert.post(average, route: "", arguments: "conditions: weather().echo()")
        #expect(custom.status == 400, "\(custom)")
        #expect(custom.error?.kind == "bad-route")
        #expect(custom.error?.message.contains("'alert' takes only main's arguments") == true, "\(custom)")
        // The same arguments pass where routes are not fixed.
        let open = try mode.start("alert", peers: peers)
        let elsewhere = try open.post(average, route: "", arguments: "conditions: weather().echo()")
        #expect(elsewhere.status == 200, "\(elsewhere)")
    }

    @Test func repeatedWarningsAreRateLimited() throws {
        let host = try HostProcess(service: "explode")
        let reading = #"{"sensor":"s","variable":"Temperature","value":30}"#
        for _ in 0..<200 { _ = try host.client.post(reading, route: "") }
        host.signal(SIGTERM)
        _ = host.waitForExit()
        let lines = host.standardError().split(separator: "\n").filter { $0.contains("exploded") }
        #expect(lines.count == 1, "\(lines.count) lines")
    }
}

/// Reads responses from a pipelining connection (Content-Length framed) and counts them, while
/// sampling a process's resident memory.
final class ResponseCounter: @unchecked Sendable {
    let fd: Int32
    let expected: Int
    private let lock = NSLock()
    private var count = 0
    private var first = 0
    private var done = false

    init(fd: Int32, expected: Int) {
        self.fd = fd
        self.expected = expected
    }

    var responses: Int { lock.withLock { count } }
    var firstStatus: Int { lock.withLock { first } }

    func run() {
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        let separator = Array("\r\n\r\n".utf8)
        loop: while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            pending.append(contentsOf: buffer[0..<n])
            var start = 0
            while let end = pending[start...].firstRange(of: separator) {
                guard let head = RawHTTP.parse(Array(pending[start..<end.upperBound]), headOnly: true),
                      let length = Int(head.headers["content-length"] ?? "0") else { break loop }
                guard end.upperBound + length <= pending.count else { break }
                start = end.upperBound + length
                lock.withLock {
                    if count == 0 { first = head.status }
                    count += 1
                }
            }
            pending.removeFirst(start)
            if responses >= expected { break }
        }
        lock.withLock { done = true }
    }

    /// Waits until every response came or `timeout` passed; returns the peak RSS seen (KiB).
    func wait(timeout: Double, pid: Int32) -> Int {
        let deadline = Date().addingTimeInterval(timeout)
        var peak = 0
        while Date() < deadline, !lock.withLock({ done }) {
            peak = max(peak, residentKiB(pid))
            usleep(5_000)
        }
        return max(peak, residentKiB(pid))
    }
}

/// Peers given by name, as the generated Kubernetes manifests give them.
@Suite(.serialized) struct NamedPeerTests {
    /// Whether this process may make a mount namespace (root, with unshare): then a test can give
    /// one host its own /etc/hosts.
    static let canUnshare = geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare")

    @Test func aNamedPeerIsLookedUpOnceNotPerHop() throws {
        let movingAvg = try HostProcess(service: "movingAvg")
        let map = try HostProcess(name: "map", commandLine: [
            "serve", "--app", BuildProducts.fixture, "--service", "map", "--port", "0", "--log-level", "warning",
            "--peers", "movingAvg=localhost:\(movingAvg.port)"])
        for _ in 0..<20 {
            #expect(try map.client.post(temperature).status == 200)
        }
        #expect(try metric(map, "dyninka_name_lookups_total") == 1)
    }

    /// A socket bound to 127.0.0.1:`port` that does not listen (-1 when the port is taken there).
    static func reserve(port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if bound == 0 { return fd }
        close(fd)
        return -1
    }

    @Test(.enabled(if: NamedPeerTests.canUnshare, "needs root and unshare (a mount namespace for /etc/hosts)"))
    func everyAddressOfANameIsTriedAndAFailureLooksItUpAgain() throws {
        // The callee listens on 127.0.0.3 only; the caller's /etc/hosts gives the name two
        // addresses, and the system puts 127.0.0.1 (where nothing listens on that port) first.
        // The port must be free on 127.0.0.1 as well (a parallel suite may listen there): a
        // socket bound to it without listening keeps it so, and connections to it are refused.
        var movingAvg: HostProcess!
        var reserved: Int32 = -1
        for _ in 0..<10 where reserved < 0 {
            let candidate = try HostProcess(name: "movingAvg", commandLine: [
                "serve", "--app", BuildProducts.fixture, "--service", "movingAvg", "--host", "127.0.0.3", "--port", "0",
                "--log-level", "warning"])
            reserved = Self.reserve(port: candidate.port)
            if reserved >= 0 { movingAvg = candidate } else { candidate.stop() }
        }
        try #require(reserved >= 0, "no port free on both 127.0.0.3 and 127.0.0.1 in 10 tries")
        defer { close(reserved) }
        let hosts = FileManager.default.temporaryDirectory.appendingPathComponent("dyninka-hosts-\(getpid())")
        try "127.0.0.3 avg-twice\n127.0.0.1 avg-twice\n".write(to: hosts, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: hosts) }
        let map = try HostProcess(name: "map", commandLine: [
            "serve", "--app", BuildProducts.fixture, "--service", "map", "--port", "0", "--log-level", "warning",
            "--peers", "movingAvg=avg-twice:\(movingAvg.port)", "--connect-retry", "0"],
            launcher: ["/usr/bin/unshare", "-m", "sh", "-c", "mount --bind \(hosts.path) /etc/hosts && exec \"$@\"", "sh"])
        for _ in 0..<5 {
            let answer = try map.client.post(temperature)
            #expect(answer.status == 200, "\(answer)")
        }
        #expect(try metric(map, "dyninka_name_lookups_total") == 1)
        // The callee goes away: the failure names both addresses, and the name is looked up again.
        movingAvg.stop()
        let down = try map.client.post(temperature)
        #expect(down.status == 502)
        #expect(down.error?.message.contains("127.0.0.3") == true, "\(down)")
        #expect(down.error?.message.contains("127.0.0.1") == true, "\(down)")
        _ = try map.client.post(temperature)
        #expect(try metric(map, "dyninka_name_lookups_total") == 2)
    }
}

@Suite struct LogTests {
    @Test func aFullStandardErrorDropsLinesInsteadOfBlocking() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        // Fill the pipe: nobody reads it.
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        let junk = [UInt8](repeating: 65, count: 4096)
        while write(fds[1], junk, junk.count) > 0 {}
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) & ~O_NONBLOCK)
        let log = Log(service: "t", level: .info, descriptor: fds[1])
        let started = Date()
        for i in 0..<1_000 { log.info("line \(i)") }
        #expect(Date().timeIntervalSince(started) < 1)
        #expect(log.suppressed.dropped == 1_000)
    }

    @Test func identicalWarningsAreWrittenOncePerWindowAndCounted() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let log = Log(service: "t", level: .info, descriptor: fds[1], repeatWindow: 0.2, burst: 5)
        for _ in 0..<100 { log.warning("same") }
        // Different lines: only `burst` a second.
        for i in 0..<20 { log.warning("other \(i)") }
        usleep(1_100_000)
        log.warning("same")
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = read(fds[0], &buffer, buffer.count)
        let lines = String(decoding: buffer[0..<max(n, 0)], as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 6, "\(lines)")
        #expect(lines.last?.contains("repeated 99 more times") == true, "\(lines.last ?? "")")
        #expect(lines.last?.contains("16 other lines held back") == true, "\(lines.last ?? "")")
        #expect(log.suppressed.limited == 99 + 16)
    }
}
