import DyninkaRoute
import Testing
@testable import DyninkaHost

@Suite struct RouteCheckerTests {
    let table: ServiceTable
    let checker: RouteChecker
    let parser = RouteParser()

    init() throws {
        table = try ServiceTable(path: BuildProducts.fixture)
        checker = RouteChecker(table: table, maxHops: 16)
    }

    @Test func tableCarriesWhatTheLibraryExports() throws {
        #expect(table.appName == "Fixture")
        #expect(table.entryService == "get")
        let alert = try #require(table["alert"])
        #expect(alert.inputType == "Average")
        #expect(alert.parameters.first?.label == "conditions")
        #expect(alert.parameters.first?.defaultArgument == .chain(try parser.parseChain("weather()")))
        #expect(table["filterTemperature"]?.outputOptional == true)
        #expect(table["calibrate"]?.isAsync == true)
        #expect(table["get"]?.defaultRoute.source == "filterTemperature()?.map().movingAvg()")
        #expect(table["get"]?.inputType == nil)
    }

    @Test func theDefaultChainChecks() throws {
        let route = try checker.check(try parser.parseChain("filterTemperature()?.map().movingAvg()"), after: table["get"])
        #expect(route.steps.map(\.service.name) == ["filterTemperature", "map", "movingAvg"])
        #expect(route.outputType == "Average")
    }

    @Test func mismatchedTypesAreRefusedNamingBothSides() throws {
        let error = #expect(throws: RouteError.self) {
            try checker.check(try parser.parseChain("movingAvg()"), after: table["filterTemperature"])
        }
        #expect(error?.message.contains("'movingAvg' takes Temperature but receives Reading from 'filterTemperature'") == true)
    }

    @Test func unknownServicesAreRefusedListingTheKnownOnes() throws {
        let error = #expect(throws: RouteError.self) { try checker.check(try parser.parseChain("nope()"), after: table["map"]) }
        #expect(error?.message.contains("unknown service 'nope'") == true)
        #expect(error?.message.contains("movingAvg") == true)
    }

    @Test func aGlobalFunctionCannotFollowAService() throws {
        #expect(throws: RouteError.self) { try checker.check(try parser.parseChain("weather()"), after: table["map"]) }
    }

    @Test func argumentsAreCheckedByLabelCountAndType() throws {
        let average = table["movingAvg"]
        _ = try checker.check(try parser.parseChain("alert(conditions: weather())"), after: average)
        for bad in ["alert()", "alert(weather())", "alert(conditions: get())", "alert(conditions: 3)", "alert(conditions: weather(), x: 1)"] {
            #expect(throws: RouteError.self, "\(bad)") { try checker.check(try parser.parseChain(bad), after: average) }
        }
        _ = try checker.check(try parser.parseChain("scale(by: 2)"), after: table["map"])
        _ = try checker.check(try parser.parseChain("scale(by: 2.5)"), after: table["map"])
        #expect(throws: RouteError.self) { try checker.check(try parser.parseChain(#"scale(by: "2")"#), after: table["map"]) }
    }

    @Test func tooManyHopsAreRefused() throws {
        let long = Array(repeating: "scale(by: 1)", count: 17).joined(separator: ".")
        let error = #expect(throws: RouteError.self) { try checker.check(try parser.parseChain(long), after: table["map"]) }
        #expect(error?.message.contains("limit is 16") == true)
    }

    @Test func rawJSONAcceptsAnyType() throws {
        _ = try checker.check(try parser.parseChain("echo()"), after: table["map"])
    }
}

@Suite struct PeerMapTests {
    @Test func peersParseFromAList() throws {
        var peers = PeerMap()
        try peers.add(list: "map=127.0.0.1:8083, movingAvg=[::1]:8084")
        #expect(peers.address(of: "map") == PeerAddress(host: "127.0.0.1", port: 8083))
        #expect(peers.address(of: "movingAvg") == PeerAddress(host: "::1", port: 8084))
        #expect(peers.address(of: "get") == nil)
    }

    @Test(arguments: ["map", "map=", "map=host", "map=host:0", "map=host:99999", "map=:80"])
    func badPeersAreRefused(_ text: String) {
        var peers = PeerMap()
        #expect(throws: PeerError.self) { try peers.add(list: text) }
    }

    @Test func templateGivesDNSSafeNames() {
        let peers = PeerMap(template: "{name}.apps.svc.cluster.local:8080")
        #expect(peers.address(of: "movingAvg") == PeerAddress(host: "moving-avg.apps.svc.cluster.local", port: 8080))
        #expect(PeerMap.dnsName("filterTemperature") == "filter-temperature")
        #expect(PeerMap.dnsName("get_URL2") == "get-url2")
    }
}

@Suite struct HostConfigurationTests {
    @Test func flagsWinOverEnvironmentOverDefaults() throws {
        let c = try HostConfiguration.parse(flags: ["app": "a.so", "service": "map", "port": "9000"],
                                              environment: ["DYNINKA_PORT": "1", "DYNINKA_CONNECT_TIMEOUT_MS": "50"])
        #expect(c.port == 9000)
        #expect(c.connectTimeout == 50)
        #expect(c.responseTimeout == 30_000)
        #expect(c.host == "127.0.0.1")
    }

    @Test func badValuesNameTheFlag() {
        let error = #expect(throws: HostStartupError.self) {
            try HostConfiguration.parse(flags: ["app": "a", "service": "s", "max-hops": "0"], environment: [:])
        }
        #expect(error?.description.contains("--max-hops") == true)
        #expect(throws: HostStartupError.self) { try HostConfiguration.parse(flags: ["service": "s"], environment: [:]) }
    }
}
